import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyAddress, expandV6, ipLiteralOfHost, looksNumeric } from './address.ts';

describe('classifyAddress', () => {
  for (const ip of [
    '1.1.1.1',
    '8.8.8.8',
    '93.184.216.34',
    '2606:4700:4700::1111',
    '2a00:1450:4001:80b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ]) {
    it(`public: ${ip}`, () => assert.deepEqual(classifyAddress(ip), { public: true }));
  }
  for (const [ip, reason] of [
    ['127.0.0.1', 'loopback_address'],
    ['127.255.255.254', 'loopback_address'],
    ['10.1.2.3', 'private_address'],
    ['172.16.0.1', 'private_address'],
    ['172.31.255.255', 'private_address'],
    ['192.168.1.1', 'private_address'],
    ['169.254.169.254', 'link_local_address'],
    ['100.64.0.1', 'cgnat_address'],
    ['0.0.0.0', 'unspecified_address'],
    ['224.0.0.1', 'multicast_address'],
    ['255.255.255.255', 'reserved_address'],
    ['198.18.0.1', 'reserved_address'],
    ['192.0.2.1', 'reserved_address'],
    ['::1', 'loopback_address'],
    ['::', 'unspecified_address'],
    ['::ffff:127.0.0.1', 'ipv4_mapped_loopback_address'],
    ['::ffff:a9fe:a9fe', 'ipv4_mapped_link_local_address'],
    ['::127.0.0.1', 'ipv4_compatible_address'],
    ['64:ff9b::a9fe:a9fe', 'nat64_link_local_address'],
    ['64:ff9b:1::1', 'nat64_local_address'],
    ['2002:c0a8:101::1', '6to4_private_address'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo_address'],
    ['fd12:3456::1', 'unique_local_address'],
    ['fe80::1%eth0', 'link_local_address'],
    ['fec0::1', 'site_local_address'],
    ['ff02::1', 'multicast_address'],
    ['2001:db8::1', 'documentation_address'],
    ['100::1', 'discard_address'],
    ['4000::1', 'reserved_address'],
  ] as const) {
    it(`refused: ${ip} (${reason})`, () => assert.deepEqual(classifyAddress(ip), { public: false, reason }));
  }
  it('rejects garbage', () => assert.equal(classifyAddress('not-an-ip').public, false));
});

describe('IPv6 expansion', () => {
  it('expands every spelling to 8 hextets', () => {
    assert.deepEqual(expandV6('::1'), [0, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(expandV6('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    assert.deepEqual(expandV6('1:2:3:4:5:6:7:8'), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(expandV6('1::2::3'), undefined);
    assert.equal(expandV6('1:2:3:4:5:6:7:8:9'), undefined);
  });
});

describe('host literals', () => {
  it('recognises literals after WHATWG URL canonicalisation', () => {
    for (const [input, expected] of [
      ['http://2130706433/', '127.0.0.1'],
      ['http://0x7f.1/', '127.0.0.1'],
      ['http://017700000001/', '127.0.0.1'],
      ['http://127.1/', '127.0.0.1'],
      ['http://0177.0.0.01/', '127.0.0.1'],
      ['http://[::ffff:7f00:1]/', '::ffff:7f00:1'],
    ] as const) {
      assert.equal(ipLiteralOfHost(new URL(input).hostname), expected, input);
    }
    assert.equal(ipLiteralOfHost('example.com'), undefined);
    assert.ok(looksNumeric('1.2.3.4.5'));
    assert.ok(!looksNumeric('example.com'));
  });
});
