// Large request bodies through a real egress process, whose leak scan runs in a
// worker thread from POOL_MIN_BYTES on (scan-pool.ts): a clean one arrives intact,
// one hiding a credential is refused like a small one, and while large bodies are
// being scanned small requests are still answered.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from 'undici';
import { egressAs, startTestPlatform, startUpstream, viaEgress, type FakeUpstream, type TestPlatform } from '@talon/testkit';
import { RULE_FIXTURES } from '../src/scan/rule-fixtures.ts';
import { POOL_MIN_BYTES } from '../src/scanning.ts';

const TOKEN = RULE_FIXTURES.github_pat!.positives[0]!;

describe('egress with large request bodies', () => {
  let tp: TestPlatform;
  let up: FakeUpstream;
  let orch: Client;
  const dir = mkdtempSync(join(tmpdir(), 'talon-egress-large-'));
  /** Prose of `size` bytes with `payload` in the middle. */
  const body = (size: number, payload = ''): Buffer => {
    const words = 'the agent posted a long document to the service and waited for the answer ';
    const half = words.repeat(Math.ceil(size / 2 / words.length)).slice(0, size / 2);
    return Buffer.from(`${half} ${payload} ${half}`);
  };

  before(async () => {
    up = await startUpstream();
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({ rules: [{ principal: 'orchestrator', host: '127.0.0.1', port: up.port, methods: ['GET', 'POST'] }] }),
    );
    tp = await startTestPlatform({
      services: ['egress'],
      llm: false,
      env: {
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${up.port}`,
        EGRESS_MAX_REQUEST_BYTES: String(8 * POOL_MIN_BYTES),
      },
    });
    orch = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
  });
  after(async () => {
    await orch?.close();
    await tp?.stop();
    await up?.close();
  });

  it('forwards a clean large body byte for byte', async () => {
    const clean = body(2 * POOL_MIN_BYTES);
    const r = await viaEgress(orch, `${up.url}/clean`, { method: 'POST', body: clean });
    assert.equal(r.status, 200);
    assert.ok(up.seen.at(-1)!.body.equals(clean));
  });

  it('refuses a large body hiding a credential, raw or encoded, and says where', async () => {
    const before = up.seen.length;
    for (const [what, payload] of [
      ['raw', TOKEN],
      ['base64', Buffer.from(`token=${TOKEN}`).toString('base64')],
      ['hex', Buffer.from(TOKEN).toString('hex')],
    ]) {
      const r = await viaEgress(orch, `${up.url}/leak`, { method: 'POST', body: body(2 * POOL_MIN_BYTES, payload) });
      assert.equal(r.status, 403, what);
      assert.equal(r.json.error.reason, 'secret_leak_blocked', what);
      assert.match(r.json.error.message, /github_pat in body/, what);
      assert.doesNotMatch(r.text, new RegExp(TOKEN.slice(4)), 'the refusal never echoes it');
    }
    assert.equal(up.seen.length, before, 'nothing reached the upstream');
  });

  it('scans several large bodies at once, and answers a small request meanwhile', async () => {
    const large = Array.from({ length: 4 }, (_, i) =>
      viaEgress(orch, `${up.url}/large-${i}`, { method: 'POST', body: body(6 * POOL_MIN_BYTES) }),
    );
    const small = await viaEgress(orch, `${up.url}/small`, { method: 'POST', body: 'just text' });
    assert.equal(small.status, 200);
    for (const r of await Promise.all(large)) assert.equal(r.status, 200);
  });
});
