import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePrometheus, sampleSum } from '../../testkit/src/prometheus.ts';
import {
  cachedReading,
  codeLabel,
  counter,
  histogram,
  initMetrics,
  METRICS,
  observe,
  PROMETHEUS_CONTENT_TYPE,
  resetMetricsForTests,
  type MetricDef,
} from './metrics.ts';

const ALL = Object.values(METRICS) as MetricDef[];

test('the catalogue: Prometheus names, one prefix, units in names, counters end in _total, bounded label keys', () => {
  const names = new Set<string>();
  for (const d of ALL) {
    assert.match(d.name, /^[a-z_][a-z0-9_]*$/, d.name);
    assert.ok(!names.has(d.name), `${d.name} declared twice`);
    names.add(d.name);
    const runtime = d.name.startsWith('process_') || d.name.startsWith('nodejs_');
    assert.ok(runtime || d.name.startsWith('talon_'), `${d.name}: talon_ prefix`);
    assert.equal(d.kind === 'counter', d.name.endsWith('_total'), `${d.name}: _total exactly on counters`);
    if (d.unit === 's') assert.match(d.name, /_seconds(_total)?$/, `${d.name}: unit in the name`);
    if (d.unit === 'By') assert.match(d.name, /_bytes$/, `${d.name}: unit in the name`);
    for (const l of d.labels) assert.match(l, /^[a-z][a-z_]*$/, `${d.name}: label ${l}`);
    assert.ok(d.help.length > 10, `${d.name}: help`);
    if (d.kind === 'histogram') assert.ok(d.buckets && d.buckets.length > 3, `${d.name}: buckets`);
  }
  // The minimum list.
  for (const n of [
    'talon_gateway_requests_total',
    'talon_gateway_auth_failures_total',
    'talon_gateway_rate_limited_total',
    'talon_turns_total',
    'talon_turn_duration_seconds',
    'talon_llm_requests_total',
    'talon_llm_tokens_total',
    'talon_llm_request_duration_seconds',
    'talon_egress_decisions_total',
    'talon_egress_leaks_blocked_total',
    'talon_vault_resolves_total',
    'talon_vault_sealed',
    'talon_sandbox_invocations_total',
    'talon_sandbox_hosts',
    'talon_memory_search_duration_seconds',
    'talon_jetstream_consumer_pending',
  ])
    assert.ok(names.has(n), n);
});

test('codeLabel keeps codes and turns anything else into other', () => {
  assert.equal(codeLabel('policy_denied'), 'policy_denied');
  assert.equal(codeLabel(''), 'none');
  assert.equal(codeLabel(undefined), 'none');
  assert.equal(codeLabel('the vault said: no "way"'), 'other');
  assert.equal(codeLabel('x'.repeat(65)), 'other');
});

test('cachedReading reads at most once per max age and never without a caller', async () => {
  let now = 0;
  let reads = 0;
  const r = cachedReading(
    async () => ++reads,
    5_000,
    () => now,
  );
  assert.equal(reads, 0);
  assert.deepEqual(await Promise.all([r(), r()]), [1, 1]);
  now = 4_999;
  assert.equal(await r(), 1);
  now = 5_000;
  assert.equal(await r(), 2);
  const failing = cachedReading(
    () => Promise.reject(new Error('down')),
    5_000,
    () => now,
  );
  assert.equal(await failing(), undefined);
});

test('render: counters, histograms and gauges as parseable Prometheus text with resource labels', async (t) => {
  resetMetricsForTests();
  t.after(resetMetricsForTests);
  // Created before the provider exists, like a service module's constants.
  const requests = counter(METRICS.gatewayRequests);
  const turns = histogram(METRICS.turnDuration);
  requests.add({ route: '/v1/models', status: '200' }); // before init: dropped, never thrown
  const m = initMetrics('gateway', { enabled: true, env: { OTEL_SERVICE_NAME: 'gateway' } });
  requests.add({ route: '/v1/models', status: '200' });
  requests.add({ route: '/v1/models', status: '200' }, 2);
  requests.add({ route: 'a "quoted" \\ back\nslash', status: '500' });
  turns.record(0.3, {});
  turns.record(7, {});
  observe(METRICS.vaultSealed, (o) => o(1));

  const res = await m.route();
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], PROMETHEUS_CONTENT_TYPE);
  assert.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)));
  assert.doesNotMatch(res.body, /^# UNIT/m);
  const exp = parsePrometheus(res.body);

  assert.equal(exp.types.get('talon_gateway_requests_total'), 'counter');
  assert.equal(sampleSum(exp, 'talon_gateway_requests_total', { route: '/v1/models', status: '200' }), 3);
  // Escaped on the way out and back to the same text.
  assert.equal(sampleSum(exp, 'talon_gateway_requests_total', { route: 'a "quoted" \\ back\nslash' }), 1);
  for (const s of exp.samples) {
    if (s.name === 'target_info') continue;
    assert.equal(s.labels.service_name, 'gateway', s.name);
    assert.match(s.labels.service_instance_id ?? '', /^.+\/\d+$/, s.name);
    assert.equal(s.labels.otel_scope_name, undefined);
  }
  assert.equal(exp.types.get('talon_turn_duration_seconds'), 'histogram');
  assert.equal(sampleSum(exp, 'talon_turn_duration_seconds_count'), 2);
  assert.equal(sampleSum(exp, 'talon_turn_duration_seconds_sum'), 7.3);
  assert.equal(sampleSum(exp, 'talon_turn_duration_seconds_bucket', { le: '0.5' }), 1);
  assert.equal(sampleSum(exp, 'talon_turn_duration_seconds_bucket', { le: '10' }), 2);
  assert.equal(sampleSum(exp, 'talon_turn_duration_seconds_bucket', { le: '+Inf' }), 2);
  assert.equal(sampleSum(exp, 'talon_vault_sealed'), 1);
  // Process and runtime metrics.
  assert.ok(sampleSum(exp, 'process_cpu_seconds_total') > 0);
  assert.ok(sampleSum(exp, 'process_resident_memory_bytes') > 0);
  assert.ok(sampleSum(exp, 'nodejs_heap_size_used_bytes') > 0);
  assert.ok(exp.types.has('nodejs_eventloop_lag_seconds'));
  // The gateway's metrics without a sample yet are declared all the same.
  assert.equal(exp.types.get('talon_gateway_auth_failures_total'), 'counter');
  assert.equal(exp.types.get('talon_gateway_rate_limited_total'), 'counter');
  assert.equal(exp.types.has('talon_turns_total'), false, "another service's metric is not declared here");
  await m.shutdown();
});

test('TALON_METRICS=off: instruments are no-ops and /metrics says metrics are off', async (t) => {
  resetMetricsForTests();
  t.after(resetMetricsForTests);
  const m = initMetrics('egress', { enabled: false });
  counter(METRICS.egressDecisions).add({ principal_kind: 'service', decision: 'allow', reason: 'allowed' });
  const res = await m.route();
  assert.equal(res.status, 200);
  assert.match(res.body, /metrics are off/);
  assert.equal(parsePrometheus(res.body).samples.length, 0);
});

test('parsePrometheus refuses malformed text', () => {
  assert.throws(() => parsePrometheus('a{b="c} 1\n'));
  assert.throws(() => parsePrometheus('a{b="\\x"} 1\n'));
  assert.throws(() => parsePrometheus('a 1 2 3\n'));
  assert.throws(() => parsePrometheus('a one\n'));
  assert.throws(() => parsePrometheus('a 1\n# TYPE a counter\n'));
  assert.throws(() => parsePrometheus('# TYPE a counter\n# TYPE a counter\n'));
  assert.deepEqual(parsePrometheus('# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1.5\nh_count 2\n').samples.length, 3);
});
