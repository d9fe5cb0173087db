import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalIp, checkOrigin, isIpOrCidr, originSet, rateKey, TrustedProxies } from './net.ts';

describe('client addresses', () => {
  it('folds IPv4-mapped IPv6 to IPv4 and compresses IPv6', () => {
    assert.equal(canonicalIp('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(canonicalIp('::FFFF:7f00:1'), '127.0.0.1');
    assert.equal(canonicalIp('127.0.0.1'), '127.0.0.1');
    assert.equal(canonicalIp('[2001:DB8:0:0:0:0:0:1]'), '2001:db8::1');
    assert.equal(canonicalIp('::1'), '::1');
    assert.equal(canonicalIp('fe80::1%eth0'), 'fe80::1');
    assert.equal(canonicalIp('not an ip'), 'invalid');
    assert.equal(canonicalIp('1.2.3.4, 5.6.7.8'), 'invalid');
  });

  it('rate-limits IPv6 per /64 and IPv4 per address', () => {
    assert.equal(rateKey('2001:db8:1:2:aaaa::1'), rateKey('2001:db8:1:2:bbbb::9'));
    assert.notEqual(rateKey('2001:db8:1:2::1'), rateKey('2001:db8:1:3::1'));
    assert.equal(rateKey('10.0.0.1'), '10.0.0.1');
  });

  it('ignores X-Forwarded-For unless the peer is a trusted proxy', () => {
    const none = new TrustedProxies([]);
    assert.equal(none.clientAddress('127.0.0.1', '203.0.113.9'), '127.0.0.1');
    assert.equal(none.clientAddress('::ffff:127.0.0.1', '203.0.113.9'), '127.0.0.1');
    const lb = new TrustedProxies(['10.0.0.0/8', '::1']);
    // Untrusted peer: header ignored even if it claims to come from a proxy.
    assert.equal(lb.clientAddress('198.51.100.7', '10.0.0.5, 203.0.113.9'), '198.51.100.7');
    // Trusted peer: rightmost untrusted hop wins; a client-prepended value is never chosen.
    assert.equal(lb.clientAddress('10.1.2.3', 'evil-spoof, 203.0.113.9'), '203.0.113.9');
    assert.equal(lb.clientAddress('10.1.2.3', '1.1.1.1, 203.0.113.9, 10.9.9.9'), '203.0.113.9');
    assert.equal(lb.clientAddress('::1', '::ffff:203.0.113.4'), '203.0.113.4');
    // A malformed hop stops the walk at the last good one.
    assert.equal(lb.clientAddress('10.1.2.3', '203.0.113.9, garbage'), '10.1.2.3');
    assert.equal(lb.clientAddress('10.1.2.3', undefined), '10.1.2.3');
  });

  it('validates proxy entries', () => {
    for (const ok of ['10.0.0.0/8', '127.0.0.1', '::1', '2001:db8::/32', '0.0.0.0/0']) assert.ok(isIpOrCidr(ok), ok);
    for (const bad of ['10.0.0.0/33', 'localhost', '10.0.0/8', '::1/129', '']) assert.ok(!isIpOrCidr(bad), bad);
    const t = new TrustedProxies(['192.168.1.0/24']);
    assert.ok(t.trusts('192.168.1.77'));
    assert.ok(t.trusts('::ffff:192.168.1.77'));
    assert.ok(!t.trusts('192.168.2.1'));
  });
});

describe('origin checks', () => {
  const allowed = originSet(['http://127.0.0.1:8080', 'https://Talon.Example.com']);
  it('allows only listed origins', () => {
    assert.equal(checkOrigin('http://127.0.0.1:8080', allowed), 'allowed');
    assert.equal(checkOrigin('https://talon.example.com', allowed), 'allowed');
    assert.equal(checkOrigin('https://talon.example.com:443', allowed), 'allowed');
    assert.equal(checkOrigin(undefined, allowed), 'missing');
    assert.equal(checkOrigin('null', allowed), 'null');
    assert.equal(checkOrigin('http://127.0.0.1:8081', allowed), 'foreign');
    assert.equal(checkOrigin('http://localhost:8080', allowed), 'foreign');
    assert.equal(checkOrigin('https://talon.example.com.evil.test', allowed), 'foreign');
    assert.equal(checkOrigin('http://talon.example.com', allowed), 'foreign');
    assert.equal(checkOrigin('garbage', allowed), 'foreign');
  });
});
