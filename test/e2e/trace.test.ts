// One trace per turn, checked with a real OTLP receiver (a fake collector on loopback):
// a chat turn whose LLM key is a vault secret and whose model calls a skill that makes an
// HTTP request goes gateway → (NATS) orchestrator → memory (BeginTurn) → egress (LLM call)
// → vault (Resolve, the key injected) → (NATS) sandbox → egress (the skill's request) →
// memory (the turn recorded). Every span of that work carries one trace id, every service
// contributes spans, every parent link resolves inside the trace, and no span holds the
// key. Health checks (gRPC Check, GET /readyz on the internal ports) create no spans.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { REPO_ROOT } from '@talon/cli/platform';
import { checkHealth } from '@talon/kit/grpc';
import { SERVICES } from '@talon/kit/service';
import {
  startFakeCollector,
  startFakeLlm,
  startTestPlatform,
  startUpstream,
  toolResults,
  waitFor,
  type CollectedSpan,
  type FakeCollector,
  type FakeLlm,
  type FakeUpstream,
  type TestPlatform,
} from '@talon/testkit';
import { builtSkill, ensureSkillsBuilt, installApproved } from '../../services/sandbox/test/support.ts';

const CANARY = `trace-canary-${randomBytes(18).toString('hex')}`;
const PASSPHRASE = `trace-${randomBytes(8).toString('hex')}`;

describe('one trace per turn, across every service', () => {
  let collector: FakeCollector;
  let llm: FakeLlm;
  let upstream: FakeUpstream;
  let tp: TestPlatform;

  before(async () => {
    await ensureSkillsBuilt();
    collector = await startFakeCollector();
    upstream = await startUpstream((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('upstream ok'));
    // The model calls the probe skill once (a GET to the fake upstream), then answers.
    llm = await startFakeLlm({
      respond: (req) => {
        if (req.headers.authorization !== `Bearer ${CANARY}`) return { text: 'unauthorised' };
        if (toolResults(req).length > 0) return { text: 'done' };
        const requests = [{ method: 'GET', url: `${upstream.url}/data` }];
        return { text: 'Fetching.', toolCalls: [{ name: 'skill_http-probe', arguments: { requests } }] };
      },
    });
    tp = await startTestPlatform({
      llm: false,
      database: 'embedded',
      env: {
        TALON_LLM_BASE_URL: llm.url,
        TALON_LLM_MODEL: 'fake-model',
        TALON_LLM_API_KEY_SECRET: 'llm_api_key',
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${llm.port},127.0.0.1:${upstream.port}`,
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
    });
    const r = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'packages/cli/src/bin.ts'),
        'secrets',
        'set',
        'llm_api_key',
        '--host',
        `127.0.0.1:${llm.port}`,
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
    await installApproved(await tp.admin(), builtSkill('malicious', 'http-probe'), {
      permissions: { hosts: [`127.0.0.1:${upstream.port}`], timeoutMs: 10_000 },
    });
  });

  after(async () => {
    await tp?.stop();
    await llm?.close();
    await upstream?.close();
    await collector?.close();
  });

  it('carries one trace from the gateway through every service, with no secret in any span', async () => {
    // Health checks first: each process exports its spans in the order they end, so once
    // the turn's spans are in, any span these checks made is in too.
    for (const s of SERVICES) {
      assert.equal(await checkHealth(`127.0.0.1:${tp.ports.grpc[s]}`, tp.platform.tls('admin'), s), 'SERVING', s);
      const ready = await fetch(`${tp.platform.internalUrl(s)}/readyz`, { signal: AbortSignal.timeout(5000) });
      assert.equal(ready.status, 200, `${s} /readyz`);
      await ready.body?.cancel();
    }

    const token = await tp.token('tracy');
    const res = await tp.chat(token, { messages: [{ role: 'user', content: 'fetch the data' }] }, { 'x-talon-conversation': 'traced' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'Fetching.\n\ndone');
    assert.equal(llm.requests.length, 2, 'one tool round trip');
    assert.match(toolResults(llm.requests[1]!)[0] ?? '', /upstream ok/, 'the skill reached the upstream through egress');
    // Positive control for the canary search: the key did reach the one place it must.
    assert.equal(llm.requests[0]!.headers.authorization, `Bearer ${CANARY}`);
    // Trace context stops at egress: neither third party sees it.
    for (const h of [...llm.requests.map((q) => q.headers), ...upstream.seen.map((q) => q.headers)])
      assert.equal(h.traceparent, undefined, 'no traceparent leaves through egress');

    const roots = collector.spans.filter((s) => s.name === 'gateway.chat');
    assert.ok(roots.length <= 1, 'one chat request, one gateway span');
    const turnSpans = (): CollectedSpan[] => {
      const root = collector.spans.find((s) => s.name === 'gateway.chat');
      return root ? collector.spans.filter((s) => s.traceId === root.traceId) : [];
    };
    const has = (spans: CollectedSpan[], service: string, name: RegExp, count = 1) =>
      spans.filter((s) => s.service === service && name.test(s.name)).length >= count;
    // Wait for the last hops of each service (spans are exported in batches, per process).
    const spans = await waitFor(
      () => {
        const t = turnSpans();
        return has(t, 'gateway', /^gateway\.chat$/) &&
          has(t, 'orchestrator', /^orchestrator\.turn$/) &&
          has(t, 'memory', /BeginTurn$|beginTurn$/) &&
          has(t, 'memory', /AppendTurns$|appendTurns$/) &&
          has(t, 'egress', /^egress\.request$/, 3) &&
          has(t, 'vault', /Resolve$|resolve$/) &&
          has(t, 'sandbox', /^sandbox\./)
          ? t
          : undefined;
      },
      30_000,
      'the spans of every hop of the turn',
    ).catch((err: Error) => {
      const seen = collector.spans.map((s) => `${s.service} ${s.name} ${s.traceId.slice(0, 8)} <- ${s.parentSpanId || '-'}`);
      throw new Error(`${err.message}; collected:\n${seen.join('\n')}`);
    });
    const [root] = spans.filter((s) => s.name === 'gateway.chat');
    assert.ok(root, 'the gateway span');
    assert.equal(root.parentSpanId, '', 'the gateway span is the root');

    // Exactly one trace id: all work of this turn — the only turn, the only egress traffic,
    // the only secret release and skill run of the suite — is in the root's trace.
    const turnWork = collector.spans.filter(
      (s) =>
        /^(gateway\.chat|orchestrator\.turn|egress\.request)$/.test(s.name) ||
        (s.service === 'sandbox' && s.name.startsWith('sandbox.')) ||
        (s.service === 'memory' && /BeginTurn|AppendTurns|beginTurn|appendTurns/.test(s.name)) ||
        (s.service === 'vault' && /Resolve|resolve$/.test(s.name)),
    );
    assert.deepEqual([...new Set(turnWork.map((s) => s.traceId))], [root.traceId], 'one trace id for the whole turn');

    // Every service contributed.
    assert.deepEqual([...new Set(spans.map((s) => s.service))].sort(), [...SERVICES].sort());

    // Parent links connect: every span but the root has its parent in the trace.
    const ids = new Set(spans.map((s) => s.spanId));
    assert.equal(ids.size, spans.length, 'span ids are unique');
    const orphans = spans.filter((s) => s !== root && !ids.has(s.parentSpanId));
    assert.deepEqual(
      orphans.map((s) => `${s.service} ${s.name}`),
      [],
      'every span has its parent in the trace',
    );
    // The hops hang where they belong: the LLM calls under the orchestrator, the skill's
    // request under the sandbox, the release of the key under egress.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const callers = spans.filter((s) => s.name === 'egress.request').map((s) => byId.get(s.parentSpanId)?.service);
    assert.equal(callers.filter((c) => c === 'orchestrator').length, 2, `egress callers: ${callers.join(', ')}`);
    assert.equal(callers.filter((c) => c === 'sandbox').length, 1, `egress callers: ${callers.join(', ')}`);
    for (const s of spans.filter((x) => x.service === 'vault' && /Resolve|resolve$/.test(x.name)))
      assert.equal(byId.get(s.parentSpanId)?.service, 'egress', 'the vault release is called by egress');

    // No span, attribute or export body holds the key.
    for (const s of collector.spans)
      for (const [k, v] of Object.entries(s.attributes)) assert.ok(!String(v).includes(CANARY), `${s.service} ${s.name} ${k}`);
    assert.ok(collector.raw.length > 0);
    assert.ok(!collector.raw.some((b) => b.includes(CANARY)), 'the key is in no OTLP export');

    // Health checks made no spans.
    const health = collector.spans.filter((s) => /health|readyz|livez/i.test(`${s.name} ${JSON.stringify(s.attributes)}`));
    assert.deepEqual(
      health.map((s) => `${s.service} ${s.name}`),
      [],
      'health checks create no spans',
    );
  });
});
