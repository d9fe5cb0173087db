// The secrets boundary, attacked for real through egress and the vault:
// injection only for the bound host, principal and placement; the canary sent
// anywhere else — raw, base64, hex, percent-encoded, gzip-compressed, in a
// header, the body, the query or the path — is blocked; an upstream echoing the
// key gets it redacted; a sealed or dead vault fails closed while other
// requests keep working.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Client } from 'undici';
import { egressAs, startTestPlatform, startUpstream, viaEgress, type FakeUpstream, type TestPlatform } from '@talon/testkit';

const CANARY = `cnry_${randomBytes(20).toString('hex')}`;
const PASSPHRASE = `boundary-${randomBytes(8).toString('hex')}`;

describe('secrets boundary: egress + vault', () => {
  let tp: TestPlatform;
  let bound: FakeUpstream;
  let other: FakeUpstream;
  let orch: Client;
  const dir = mkdtempSync(join(tmpdir(), 'talon-boundary-'));
  const cli = (args: string[], input?: string) => tp.cli(args, input);

  before(async () => {
    bound = await startUpstream((req, res) => {
      // Echoes what it received, like a careless API that reflects credentials.
      const auth = String(req.headers.authorization ?? '');
      res.writeHead(200, { 'content-type': 'text/plain', 'x-echo': auth }).end(`got ${auth} on ${req.url}`);
    });
    other = await startUpstream();
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({
        rules: [
          { principal: 'orchestrator', host: '127.0.0.1', port: bound.port, methods: ['GET', 'POST'] },
          { principal: 'orchestrator', host: '127.0.0.1', port: other.port, methods: ['GET', 'POST'] },
          { principal: 'gateway', host: '127.0.0.1', port: bound.port, methods: ['GET', 'POST'] },
        ],
      }),
    );
    tp = await startTestPlatform({
      services: ['vault', 'egress'],
      llm: false,
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${bound.port},127.0.0.1:${other.port}`,
      },
    });
    const r = cli(
      ['secrets', 'set', 'api_key', '--host', `127.0.0.1:${bound.port}`, '--bearer', '--principal', 'orchestrator'],
      `${CANARY}\n`,
    );
    assert.equal(r.status, 0, r.stderr);
    const q = cli(['secrets', 'set', 'query_key', '--host', `127.0.0.1:${bound.port}`, '--query', 'key'], 'q-secret-value-123456\n');
    assert.equal(q.status, 0, q.stderr);
    orch = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    await tp.egressCaughtUpWithVault();
  });
  after(async () => {
    await orch?.close();
    await tp?.stop();
    await bound?.close();
    await other?.close();
  });

  it('injects the value only for the bound host, principal and placement', async () => {
    const ok = await viaEgress(orch, `${bound.url}/v1`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(ok.status, 200);
    assert.equal(bound.seen.at(-1)!.headers.authorization, `Bearer ${CANARY}`);
    const q = await viaEgress(orch, `${bound.url}/search?key={{secret:query_key}}&q=cats`);
    assert.equal(q.status, 200);
    assert.equal(bound.seen.at(-1)!.url, '/search?key=q-secret-value-123456&q=cats');

    const otherHost = await viaEgress(orch, `${other.url}/v1`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(otherHost.status, 403);
    assert.match(otherHost.json.error.message, /host_not_bound/);
    const gw = egressAs(tp.home, tp.ports.egressProxy, 'gateway');
    const otherPrincipal = await viaEgress(gw, `${bound.url}/v1`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(otherPrincipal.status, 403);
    assert.match(otherPrincipal.json.error.message, /principal_not_allowed/);
    await gw.close();
    const wrongPlace = await viaEgress(orch, `${bound.url}/v1?k={{secret:api_key}}`);
    assert.equal(wrongPlace.status, 403);
    assert.match(wrongPlace.json.error.message, /placement_mismatch/);
    const missing = await viaEgress(orch, `${bound.url}/v1`, { headers: { authorization: 'Bearer {{secret:nope_not_here}}' } });
    assert.equal(missing.status, 404);
    assert.equal(other.seen.length, 0, 'the unbound host never saw a request');
  });

  it('blocks the canary leaving for another host in every encoding and place', async () => {
    const b64 = Buffer.from(CANARY).toString('base64');
    const hex = Buffer.from(CANARY).toString('hex');
    const pct = [...CANARY].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
    const attempts: Array<[string, string, Parameters<typeof viaEgress>[2]]> = [
      ['header raw', '/h', { headers: { 'x-data': CANARY } }],
      ['header base64', '/h', { headers: { 'x-data': b64 } }],
      ['query raw', `/q?d=${CANARY}`, {}],
      ['query hex', `/q?d=${hex}`, {}],
      ['query percent', `/q?d=${pct}`, {}],
      ['path raw', `/p/${CANARY}/x`, {}],
      ['path base64url', `/p/${Buffer.from(CANARY).toString('base64url')}`, {}],
      ['body raw', '/b', { method: 'POST', body: `leak=${CANARY}` }],
      ['body base64', '/b', { method: 'POST', body: JSON.stringify({ d: b64 }), headers: { 'content-type': 'application/json' } }],
      ['body hex', '/b', { method: 'POST', body: hex }],
      ['body percent', '/b', { method: 'POST', body: `d=${pct}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
      ['body gzip', '/b', { method: 'POST', body: gzipSync(Buffer.from(`x ${CANARY} y`)), headers: { 'content-encoding': 'gzip' } }],
      ['body base64 of gzip', '/b', { method: 'POST', body: gzipSync(Buffer.from(CANARY)).toString('base64') }],
      [
        'body json-escaped',
        '/b',
        {
          method: 'POST',
          body: JSON.stringify({ d: [...CANARY].map((c) => `\\u00${c.charCodeAt(0).toString(16)}`).join('') }).replace(/\\\\/g, '\\'),
        },
      ],
    ];
    for (const [what, path, init] of attempts) {
      const r = await viaEgress(orch, `${other.url}${path}`, init);
      assert.equal(r.status, 403, `${what}: ${r.text}`);
      assert.equal(r.json.error.reason, 'secret_leak_blocked', what);
      assert.doesNotMatch(r.text, new RegExp(CANARY));
    }
    assert.equal(other.seen.length, 0, 'nothing reached the other host');
  });

  it('redacts the key when the bound upstream echoes it back, in body and headers', async () => {
    const r = await viaEgress(orch, `${bound.url}/echo`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(r.status, 200);
    assert.doesNotMatch(r.text, new RegExp(CANARY));
    assert.match(r.text, /got Bearer \[REDACTED:api_key\] on \/echo/);
    assert.equal(r.headers['x-echo'], 'Bearer [REDACTED:api_key]');
  });

  it('a rotated value is used from the next poll on (cached values are dropped when the vault changes)', async () => {
    const first = await viaEgress(orch, `${bound.url}/rot`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(first.status, 200);
    const r = cli(['secrets', 'rotate', 'api_key'], `${CANARY}-v2\n`);
    assert.equal(r.status, 0, r.stderr);
    await tp.egressCaughtUpWithVault();
    await viaEgress(orch, `${bound.url}/rot2`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(bound.seen.at(-1)!.headers.authorization, `Bearer ${CANARY}-v2`);
    const back = cli(['secrets', 'rotate', 'api_key'], `${CANARY}\n`);
    assert.equal(back.status, 0, back.stderr);
    await tp.egressCaughtUpWithVault();
  });

  it('fails closed when the vault is sealed, and keeps other requests working', async () => {
    const s = cli(['vault', 'seal']);
    assert.equal(s.status, 0, s.stderr);
    // Egress learns of the seal at its next poll (every 150 ms here) and drops cached values.
    const sealed = await tp.until('egress to refuse secrets of the sealed vault', async () => {
      const res = await viaEgress(orch, `${bound.url}/v1`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
      return res.status === 503 && res;
    });
    assert.equal(sealed.headers['x-talon-egress-error'], 'vault_sealed');
    const plain = await viaEgress(orch, `${bound.url}/plain`);
    assert.equal(plain.status, 200);
    // The scan index survives sealing: the canary still cannot leave.
    const leak = await viaEgress(orch, `${other.url}/q?d=${CANARY}`);
    assert.equal(leak.status, 403);
    const u = cli(['vault', 'unseal'], `${PASSPHRASE}\n`);
    assert.equal(u.status, 0, u.stderr);
    const back = await viaEgress(orch, `${bound.url}/v1`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
    assert.equal(back.status, 200);
  });

  it('fails closed when the vault is down, and keeps other requests working', async () => {
    await tp.platform.stopService('vault', { kill: true });
    // Egress notices at its next poll (every 150 ms here).
    const down = await tp.until('egress to fail closed with the vault down', async () => {
      const res = await viaEgress(orch, `${bound.url}/v1`, { headers: { authorization: 'Bearer {{secret:api_key}}' } });
      return res.status === 503 && res;
    });
    assert.equal(down.status, 503);
    const plain = await viaEgress(orch, `${bound.url}/plain`);
    assert.equal(plain.status, 200);
    const leak = await viaEgress(orch, `${other.url}/q?d=${CANARY}`);
    assert.equal(leak.status, 403, 'the last scan index still protects');
  });
});
