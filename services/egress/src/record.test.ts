// What a decision records of a request, with the real leak scanner: redactions in
// place of every flagged span, never the value, in any part of the request.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { fingerprintSecret } from './scan/index.ts';
import { createScanner } from './scanning.ts';
import { marker, recordHeaders, recordRequest } from './record.ts';

const SECRET = `val${randomBytes(16).toString('hex')}`;
const GHP = `ghp_${'aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6'}`;

function scanner() {
  const s = createScanner({ maxScanBytes: 1 << 20 });
  s.setFingerprints([fingerprintSecret('api_key', Buffer.from(SECRET))]);
  return s;
}

const holds = (x: unknown, needle: string) => JSON.stringify(x).toLowerCase().includes(needle.toLowerCase());

describe('recordRequest', () => {
  const s = scanner();

  it('redacts a vault secret in the path, query and a header, keeping what is clean', () => {
    const r = recordRequest(s, {
      host: 'api.example.com',
      path: `/v1/${SECRET}/items`,
      query: `?q=cats&k=${Buffer.from(SECRET).toString('hex')}`,
      headers: { 'x-data': `prefix ${SECRET} suffix`, accept: 'application/json' },
    });
    assert.equal(r.host, 'api.example.com');
    assert.equal(r.path, '/v1/[REDACTED:secret:api_key]/items');
    assert.match(r.query, /^\?q=cats&/);
    assert.match(r.query, /REDACTED:secret:api_key/);
    assert.deepEqual(
      r.requestHeaders.find((h) => h.name === 'accept'),
      { name: 'accept', value: 'application/json' },
    );
    assert.match(r.requestHeaders.find((h) => h.name === 'x-data')!.value, /^prefix \[REDACTED:secret:api_key\] suffix$/);
    assert.ok(!holds(r, SECRET) && !holds(r, Buffer.from(SECRET).toString('hex')));
  });

  it('redacts a credential rule match, and names the rule', () => {
    const r = recordRequest(s, { host: 'h.example', path: '/x', query: `?t=${GHP}`, headers: {} });
    assert.equal(r.query, '?t=[REDACTED:github_pat]');
    assert.ok(!holds(r, GHP));
  });

  it('a secret split across query parameters or headers is not reassembled in the record', () => {
    const half = SECRET.length >> 1;
    const q = recordRequest(s, { host: 'h', path: '/', query: `?a=${SECRET.slice(0, half)}&b=${SECRET.slice(half)}`, headers: {} });
    assert.ok(!holds(q, SECRET.slice(0, half)) && !holds(q, SECRET.slice(half)), q.query);
    const h = recordHeaders(s, { 'x-a': SECRET.slice(0, half), 'x-b': SECRET.slice(half), authorization: 'Bearer {{secret:api_key}}' });
    assert.ok(!holds(h, SECRET.slice(0, half)) && !holds(h, SECRET.slice(half)), JSON.stringify(h));
    assert.deepEqual(
      h.find((x) => x.name === 'authorization'),
      { name: 'authorization', value: 'Bearer {{secret:api_key}}' },
    );
  });

  it('a host name carrying the secret is recorded as a redaction', () => {
    const r = recordRequest(s, { host: `${SECRET}.attacker.example`, path: '/', query: '', headers: {} });
    assert.match(r.host, /^\[REDACTED:/);
  });

  it('a placeholder does not shield a value written next to it', () => {
    const h = recordHeaders(s, { authorization: `Bearer {{secret:api_key}} ${SECRET}` });
    assert.ok(!holds(h, SECRET), JSON.stringify(h));
  });

  it('proxy credentials and cookies are never recorded', () => {
    const h = recordHeaders(s, { 'proxy-authorization': 'Basic abc', cookie: 'sid=1' });
    assert.deepEqual(h, [
      { name: 'proxy-authorization', value: '[REDACTED]' },
      { name: 'cookie', value: '[REDACTED]' },
    ]);
  });

  it('on the clean path, hop-by-hop headers the scan did not read are still redacted', () => {
    const r = recordRequest(
      s,
      { host: 'h', path: '/ok', query: '?a=1', headers: { accept: 'text/plain', host: SECRET } },
      { headers: new Set(['accept']) },
    );
    assert.equal(r.path, '/ok');
    assert.equal(r.query, '?a=1');
    assert.ok(!holds(r, SECRET));
  });

  it('without a scanner, credential shapes are still scrubbed', () => {
    const r = recordRequest(undefined, {
      host: 'h',
      path: '/',
      query: '?token=abc123def456',
      headers: { authorization: 'Bearer abc123def456' },
    });
    assert.ok(!holds(r, 'abc123def456'), JSON.stringify(r));
  });

  it('marker lists each label once', () => {
    assert.equal(marker(['a', 'b', 'a']), '[REDACTED:a,b]');
    assert.equal(marker([]), '[REDACTED:credential]');
  });
});
