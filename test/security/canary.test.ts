// docs/architecture.md invariant 1 for a whole chat turn: a canary secret put into the vault
// through the CLI is injected by egress into the LLM call (the fake LLM checks
// it), yet it is never observed on NATS, in any log, in any exported span, in any
// table except as ciphertext, or in the heap of gateway, orchestrator, memory or
// sandbox. An upstream that echoes the key back has it redacted before the
// orchestrator — and so the user — sees it. Every search is also run on the one
// place the canary must be (the fake LLM's request), so a broken search fails.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Subscription } from '@nats-io/transport-node';
import { REPO_ROOT } from '@talon/cli/platform';
import { startFakeCollector, startTestPlatform, streamedText, type FakeCollector, type TestPlatform } from '@talon/testkit';

const CANARY = `canary-${randomBytes(18).toString('hex')}`;
const FORMS = [
  CANARY,
  Buffer.from(CANARY).toString('base64'),
  Buffer.from(CANARY).toString('base64url'),
  Buffer.from(CANARY).toString('hex'),
];
const PASSPHRASE = `passphrase-${randomBytes(8).toString('hex')}`;

function leaks(haystack: string | Buffer): string[] {
  const text = typeof haystack === 'string' ? haystack : haystack.toString('latin1');
  return FORMS.filter((f) => text.includes(f));
}

describe('invariant 1: a canary secret through a whole turn', () => {
  let tp: TestPlatform;
  let collector: FakeCollector;
  let sub: Subscription;
  const natsSeen: Buffer[] = [];
  let egressDecisions = 0;
  const snapshots = mkdtempSync(join(tmpdir(), 'talon-heap-'));

  before(async () => {
    collector = await startFakeCollector();
    tp = await startTestPlatform({
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        TALON_LLM_API_KEY_SECRET: 'llm_api_key',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        TALON_LOG_LEVEL: 'debug',
      },
      nodeArgs: ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshots}`],
      llm: {
        reply: (req) => {
          const auth = String(req.headers.authorization ?? '');
          if (auth !== `Bearer ${CANARY}`) return `unauthorised: got ${auth.slice(0, 20)}`;
          // A hostile or careless upstream echoing the key back.
          const last = JSON.stringify(req.body.messages ?? '');
          return last.includes('echo my key')
            ? `your key is ${auth.slice(7)} (and in base64 ${Buffer.from(auth.slice(7)).toString('base64')})`
            : 'key ok';
        },
      },
    });
    const admin = await tp.admin();
    sub = admin.subscribe('>');
    void (async () => {
      for await (const m of sub) {
        if (m.subject === 'talon.audit.egress.decision') egressDecisions += 1;
        natsSeen.push(Buffer.from(m.data));
        if (m.headers) natsSeen.push(Buffer.from(JSON.stringify([...m.headers.keys()].map((k) => [k, m.headers!.get(k)]))));
        natsSeen.push(Buffer.from(m.subject));
      }
    })();
    // The operator stores the key through the CLI, value on stdin.
    const r = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'packages/cli/src/bin.ts'),
        'secrets',
        'set',
        'llm_api_key',
        '--host',
        `127.0.0.1:${tp.llm!.port}`,
        '--bearer',
        '--principal',
        'orchestrator',
      ],
      {
        input: `${CANARY}\n`,
        encoding: 'utf8',
        env: { ...process.env, TALON_HOME: tp.home, VAULT_GRPC_PORT: String(tp.ports.grpc.vault) },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!leaks(r.stdout + r.stderr).length, 'the CLI never echoes the value');
    // Egress polls the vault for its scan index (the echo test needs the key's fingerprint).
    await tp.egressCaughtUpWithVault();
  });

  after(async () => {
    sub?.unsubscribe();
    await tp?.stop();
    await collector?.close();
  });

  it('egress injects the key for the bound host (the fake LLM accepts it)', async () => {
    const token = await tp.token('dana');
    const plain = await tp.chat(token, { messages: [{ role: 'user', content: 'hello' }] });
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.json.choices[0].message.content, 'key ok');
    const streamed = await tp.chat(token, { stream: true, messages: [{ role: 'user', content: 'hello again' }] });
    assert.equal(streamedText(streamed.text), 'key ok');
    // Positive control: the canary did reach the one place it must.
    assert.equal(tp.llm!.requests.at(-1)!.headers.authorization, `Bearer ${CANARY}`);
  });

  it('an upstream echoing the key back is redacted before the orchestrator sees it', async () => {
    const token = await tp.token('erin');
    const r = await tp.chat(token, { messages: [{ role: 'user', content: 'please echo my key' }] });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.choices[0].message.content, /your key is/);
    assert.deepEqual(leaks(r.text), []);
    assert.match(r.json.choices[0].message.content, /REDACTED/);
  });

  it('never appears on NATS', async () => {
    // Egress publishes its decision on each LLM call last, after the reply: wait for them all.
    await tp.until('egress decisions of every LLM call on NATS', () => egressDecisions >= tp.llm!.requests.length);
    await (await tp.admin()).flush();
    await tp.until('the subscription to take every message received', () => sub.getPending() === 0);
    assert.ok(natsSeen.length > 10, 'the subscription saw the turns');
    assert.deepEqual(leaks(Buffer.concat(natsSeen)), []);
  });

  it('never appears in any log', () => {
    const logs = readdirSync(join(tp.home, 'logs')).map((f) => readFileSync(join(tp.home, 'logs', f)));
    assert.ok(logs.length >= 7);
    assert.deepEqual(leaks(Buffer.concat(logs)), []);
  });

  it('never appears in an exported span, and one trace spans the services', async () => {
    // Spans are exported in batches: wait for the turn's trace to hold every service (the assertions below say what is missing).
    const joined = () => {
      const turn = collector.spans.find((s) => s.service === 'gateway' && s.name === 'gateway.chat');
      const services = new Set(collector.spans.filter((s) => s.traceId === turn?.traceId).map((s) => s.service));
      return turn !== undefined && ['gateway', 'orchestrator', 'memory', 'egress', 'vault'].every((s) => services.has(s));
    };
    await tp.until('the turn’s spans from every service', joined).catch(() => undefined);
    assert.ok(collector.spans.length > 0, 'spans were exported');
    assert.deepEqual(leaks(collector.raw.join('\n')), []);
    const turn = collector.spans.find((s) => s.service === 'gateway' && s.name === 'gateway.chat');
    assert.ok(turn, 'gateway span');
    const services = new Set(collector.spans.filter((s) => s.traceId === turn.traceId).map((s) => s.service));
    const all = [...new Set(collector.spans.map((s) => `${s.service}:${s.name}`))].join(', ');
    for (const s of ['gateway', 'orchestrator', 'memory', 'egress', 'vault'])
      assert.ok(services.has(s), `${s} joined the trace (${[...services].join(', ')}); all spans: ${all}`);
  });

  it('is stored only as ciphertext', async () => {
    const db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
    try {
      const { rows: tables } = await db.query<{ s: string; t: string }>(
        `select table_schema as s, table_name as t from information_schema.tables where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`,
      );
      assert.ok(tables.some((t) => t.s === 'vault' && t.t === 'encrypted_secrets'));
      let dumped = '';
      for (const { s, t } of tables) {
        const { rows } = await db.query(`select * from "${s}"."${t}"`);
        dumped += JSON.stringify(rows, (_k, v: unknown) => (v instanceof Buffer ? v.toString('latin1') : v));
      }
      assert.ok(dumped.length > 1000);
      assert.deepEqual(leaks(dumped), []);
    } finally {
      await db.end();
    }
  });

  it('is not in the heap of gateway, orchestrator, memory or sandbox', async () => {
    for (const s of ['gateway', 'orchestrator', 'memory', 'sandbox'] as const) {
      const before = new Set(readdirSync(snapshots));
      tp.platform.process(s)!.kill('SIGUSR2');
      // The file grows while it is written; it is complete when it parses (its last section, "strings", closes it).
      const file = await tp.until(
        `${s} to write a heap snapshot`,
        () => {
          const fresh = readdirSync(snapshots).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
          if (!fresh) return undefined;
          const p = join(snapshots, fresh);
          const text = readFileSync(p, 'latin1');
          if (!text.trimEnd().endsWith(']}')) return undefined;
          try {
            JSON.parse(text);
          } catch {
            return undefined;
          }
          return p;
        },
        120_000,
      );
      assert.deepEqual(leaks(readFileSync(file)), [], `${s} heap`);
    }
  });
});
