// Metrics observed from outside, as Prometheus sees them: every service's /metrics on
// its internal port parses as Prometheus text and lists its catalogue (kit/metrics.ts);
// a chat turn, a failed login, a blocked leak and a skill call each move the right
// series (scraped before and after); and no label value carries a token, a secret or
// what a user wrote.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { METRICS, PROMETHEUS_CONTENT_TYPE, type MetricDef } from '@talon/kit/metrics';
import { SERVICES, type ServiceName } from '@talon/kit/service';
import {
  egressAs,
  receivedTexts,
  sampleSum,
  scrape,
  startTestPlatform,
  toolResults,
  viaEgress,
  waitFor,
  type Exposition,
  type RecordedLlmRequest,
  type TestPlatform,
} from '@talon/testkit';
import { builtSkill, ensureSkillsBuilt, installApproved } from '../../services/sandbox/test/support.ts';
import { RULE_FIXTURES } from '../../services/egress/src/scan/rule-fixtures.ts';

/** Scripted model: "CALL <tool> <json>" asks for that tool call; a tool result is answered; anything else echoed. */
function respond(req: RecordedLlmRequest) {
  const results = toolResults(req);
  if (results.length > 0) return { text: `Tool said: ${results.at(-1)}` };
  const user = [...receivedTexts(req)].reverse().find((m) => m.role === 'user')?.text ?? '';
  const m = /^CALL (\S+) (.+)$/s.exec(user);
  if (m) return { text: 'Working on it.', toolCalls: [{ name: m[1]!, arguments: JSON.parse(m[2]!) as unknown }] };
  return undefined;
}

const USER_TEXT = 'metrics-canary-user-text-7f3a';
const LEAK = RULE_FIXTURES.github_pat!.positives[0]!;

describe('metrics', () => {
  let tp: TestPlatform;
  let token: string;
  const metricsOf = (s: ServiceName): Promise<Exposition> => scrape(`${tp.platform.internalUrl(s)}/metrics`);

  before(async () => {
    await ensureSkillsBuilt();
    tp = await startTestPlatform({ llm: { respond } });
    token = await tp.token('alice');
    await installApproved(await tp.admin(), builtSkill('examples', 'unit-convert'));
  });
  after(async () => {
    await tp?.stop();
  });

  it('every service serves its catalogue as Prometheus text on the internal port, labelled with service and instance', async () => {
    for (const s of SERVICES) {
      const res = await fetch(`${tp.platform.internalUrl(s)}/metrics`);
      assert.equal(res.status, 200, s);
      assert.equal(res.headers.get('content-type'), PROMETHEUS_CONTENT_TYPE, s);
      const exp = await metricsOf(s);
      const own = (Object.values(METRICS) as MetricDef[]).filter((d) => d.owner === s);
      for (const d of own) assert.equal(exp.types.get(d.name), d.kind, `${s} declares ${d.name}`);
      for (const n of [
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_heap_size_used_bytes',
        'nodejs_eventloop_lag_seconds',
      ])
        assert.ok(
          exp.samples.some((x) => x.name === n),
          `${s}: ${n}`,
        );
      for (const x of exp.samples) {
        if (x.name === 'target_info') continue;
        assert.equal(x.labels.service_name, s, `${s}: ${x.name}`);
        assert.match(x.labels.service_instance_id ?? '', /\/\d+$/, `${s}: ${x.name}`);
      }
      const head = await fetch(`${tp.platform.internalUrl(s)}/metrics`, { method: 'HEAD' });
      assert.equal(head.status, 200);
    }
    assert.equal(sampleSum(await metricsOf('vault'), 'talon_vault_sealed'), 1, 'started without a passphrase: sealed');
    assert.equal(sampleSum(await metricsOf('sandbox'), 'talon_sandbox_hosts'), 0, 'no plugin host before the first skill call');
    const orch = await metricsOf('orchestrator');
    assert.ok(
      orch.samples.some(
        (x) => x.name === 'talon_jetstream_consumer_pending' && x.labels.stream === 'TALON_INBOUND' && x.labels.consumer === 'orchestrator',
      ),
      'the inbound consumer backlog is reported',
    );
  });

  it('a chat turn moves the gateway, turn, LLM and egress series', async () => {
    const [gw0, or0, eg0] = await Promise.all([metricsOf('gateway'), metricsOf('orchestrator'), metricsOf('egress')]);
    const res = await tp.chat(token, { messages: [{ role: 'user', content: USER_TEXT }] });
    assert.equal(res.status, 200, res.text);
    // The turn's duration is recorded once its message is acked, just after the reply left.
    const count = (e: Exposition) => sampleSum(e, 'talon_turn_duration_seconds_count');
    const or1 = await waitFor(
      async () => {
        const e = await metricsOf('orchestrator');
        return count(e) > count(or0) ? e : undefined;
      },
      20_000,
      'the turn to be timed',
    );
    const answered = (e: Exposition) => sampleSum(e, 'talon_turns_total', { outcome: 'answered' });
    assert.equal(answered(or1) - answered(or0), 1);
    const llm = { provider: 'openai', outcome: 'ok' };
    assert.equal(sampleSum(or1, 'talon_llm_requests_total', llm) - sampleSum(or0, 'talon_llm_requests_total', llm), 1);
    assert.ok(
      sampleSum(or1, 'talon_llm_tokens_total', { direction: 'input' }) > sampleSum(or0, 'talon_llm_tokens_total', { direction: 'input' }),
    );
    assert.ok(sampleSum(or1, 'talon_llm_request_duration_seconds_count') > sampleSum(or0, 'talon_llm_request_duration_seconds_count'));
    const route = { route: '/v1/chat/completions', status: '200' };
    const gw1 = await waitFor(
      async () => {
        const e = await metricsOf('gateway');
        return sampleSum(e, 'talon_gateway_requests_total', route) > sampleSum(gw0, 'talon_gateway_requests_total', route) ? e : undefined;
      },
      10_000,
      'the request to be counted',
    );
    assert.equal(sampleSum(gw1, 'talon_gateway_requests_total', route) - sampleSum(gw0, 'talon_gateway_requests_total', route), 1);
    const allowed = { principal_kind: 'service', decision: 'allow', reason: 'allowed' };
    const eg1 = await metricsOf('egress');
    assert.ok(sampleSum(eg1, 'talon_egress_decisions_total', allowed) > sampleSum(eg0, 'talon_egress_decisions_total', allowed));
  });

  it('a failed login moves the auth failures by reason', async () => {
    const before = await metricsOf('gateway');
    const bad = await tp.chat(`talon_pat_${'0'.repeat(64)}`, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(bad.status, 401);
    const none = await tp.chat(undefined, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(none.status, 401);
    const after1 = await metricsOf('gateway');
    const moved = (reason: string) =>
      sampleSum(after1, 'talon_gateway_auth_failures_total', { reason }) -
      sampleSum(before, 'talon_gateway_auth_failures_total', { reason });
    assert.equal(moved('unknown_token'), 1);
    assert.equal(moved('missing_token'), 1);
    const r401 = { route: '/v1/chat/completions', status: '401' };
    await waitFor(
      async () =>
        sampleSum(await metricsOf('gateway'), 'talon_gateway_requests_total', r401) -
          sampleSum(before, 'talon_gateway_requests_total', r401) ===
          2 || undefined,
      10_000,
      'both 401s to be counted',
    );
  });

  it('a blocked leak moves the egress decisions and the leaks by rule', async () => {
    const before = await metricsOf('egress');
    const orch = egressAs(tp.home, tp.ports.egressProxy, 'orchestrator');
    try {
      const r = await viaEgress(orch, `${tp.llm!.url}/chat/completions`, { method: 'POST', headers: { 'x-data': LEAK }, body: '{}' });
      assert.equal(r.status, 403, r.text);
    } finally {
      await orch.close();
    }
    const after1 = await metricsOf('egress');
    const leaks = (e: Exposition) => sampleSum(e, 'talon_egress_leaks_blocked_total', { rule: 'github_pat' });
    assert.equal(leaks(after1) - leaks(before), 1);
    const denied = { principal_kind: 'service', decision: 'deny', reason: 'secret_leak_blocked' };
    assert.equal(sampleSum(after1, 'talon_egress_decisions_total', denied) - sampleSum(before, 'talon_egress_decisions_total', denied), 1);
  });

  it('a skill call moves the sandbox invocations', async () => {
    const before = await metricsOf('sandbox');
    const res = await tp.chat(token, { messages: [{ role: 'user', content: 'CALL skill_unit-convert {"value":2,"from":"kg","to":"g"}' }] });
    assert.equal(res.status, 200, res.text);
    assert.match(res.json.choices[0].message.content, /2000/);
    const after1 = await metricsOf('sandbox');
    assert.equal(
      sampleSum(after1, 'talon_sandbox_invocations_total', { outcome: 'ok' }) -
        sampleSum(before, 'talon_sandbox_invocations_total', { outcome: 'ok' }),
      1,
    );
    assert.ok(
      sampleSum(after1, 'talon_sandbox_invocation_duration_seconds_count') >
        sampleSum(before, 'talon_sandbox_invocation_duration_seconds_count'),
    );
    // The call started a plugin host, which stays until SANDBOX_HOST_IDLE_MS (a minute) passes idle.
    assert.equal(sampleSum(after1, 'talon_sandbox_hosts'), 1, 'one call, one plugin host');
  });

  it('no label value carries a token, a secret, a user text or an id', async () => {
    for (const s of SERVICES) {
      const exp = await metricsOf(s);
      for (const x of exp.samples) {
        for (const [k, v] of Object.entries(x.labels)) {
          const where = `${s} ${x.name}{${k}="${v}"}`;
          assert.ok(!v.includes(token) && !/talon_pat_/.test(v), `a token in ${where}`);
          assert.ok(!v.includes(LEAK) && !/ghp_/.test(v), `a credential in ${where}`);
          assert.ok(!v.includes(USER_TEXT), `user text in ${where}`);
          assert.doesNotMatch(v, /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i, `an id in ${where}`);
          assert.ok(v.length <= 80, `an unbounded value in ${where}`);
        }
      }
    }
  });
});
