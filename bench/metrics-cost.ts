// The cost of metrics on a hot path, measured in one run. Two fresh platforms side by
// side, one with TALON_METRICS=off and one with metrics on, warmed up alike and driven in
// alternating rounds (off-on, on-off, ...) so drift in the machine's load falls on both
// alike. The whole comparison runs twice with the start order swapped (a new pair each
// time), so neither side is always the older, warmer or first-started platform — an
// earlier version compared a fresh platform with one that had run the whole bench, and
// metrics "on" came out faster.
import { counter, histogram, initMetrics, METRICS, type MetricDef } from '@talon/kit/metrics';
import { sampleSum, scrape, type Exposition } from '@talon/testkit';
import { cpuSeconds, fmt, platformPids, summarize, table } from './lib.ts';

type Side = 'off' | 'on';

/** One platform under test: a request resolves to its latency in ms. */
export interface CostTarget {
  request: (i: number) => Promise<number>;
  stop: () => Promise<void>;
  /** Its TALON_HOME: the CPU its processes use is read from /proc. */
  home: string;
  /** Its services' /metrics URLs, scraped on the metrics-on side to count recordings. */
  metricsUrls: readonly string[];
}

export interface MetricsCostOptions {
  /** Starts a fresh platform with TALON_METRICS set to `metrics`. */
  start: (metrics: Side) => Promise<CostTarget>;
  /** Alternating rounds per phase (two phases, start order swapped). */
  rounds: number;
  /** Requests on each side before measuring (JIT, pools, history). */
  warmup: number;
  /** Sequential requests per round and side (latency). */
  sequential: number;
  /** Seconds of concurrent requests per round and side (throughput). */
  seconds: number;
  concurrency: number;
  /** What a request is, for the table (`turn`, `1 KiB request`). */
  unit: string;
  /**
   * A control run: both sides start with metrics off (an A/A comparison), to show how far
   * two identical platforms drift apart on this machine.
   */
  control?: boolean;
}

interface SideResult {
  rps: number;
  p50: number;
  p99: number;
  /** CPU milliseconds the platform's processes used per request (all of them, /proc). */
  cpuMs: number;
}

export interface MetricsCost {
  off: SideResult;
  on: SideResult;
  /** (on - off) / off per phase, in percent; negative: metrics on was slower. */
  phaseRpsChangePct: number[];
  /** (on - off) / off over both phases, in percent. */
  rpsChangePct: number;
  p50DeltaMs: number;
  /** Metric recordings (counter adds, histogram records) the metrics-on platform made per request. */
  recordingsPerRequest: number;
  /** CPU nanoseconds one recording costs with a live meter provider, minus the no-op's. */
  nsPerRecording: number;
}

async function throughput(fn: (i: number) => Promise<number>, seconds: number, conc: number): Promise<{ n: number; secs: number }> {
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (performance.now() < end) await fn(n++);
    }),
  );
  return { n, secs: (performance.now() - t0) / 1000 };
}

interface Tally {
  lat: number[];
  n: number;
  secs: number;
  /** CPU seconds of the platform's processes during the throughput runs. */
  cpu: number;
  /** Metric recordings and requests of the metrics-on platform over the phase. */
  recordings: number;
  requests: number;
}
const tally0 = (): Tally => ({ lat: [], n: 0, secs: 0, cpu: 0, recordings: 0, requests: 0 });
const empty = (): Record<Side, Tally> => ({ off: tally0(), on: tally0() });
const rps = (t: Tally) => t.n / t.secs;
const changePct = (t: Record<Side, Tally>) => ((rps(t.on) - rps(t.off)) / rps(t.off)) * 100;

/** One phase: a fresh pair started in `order`, warmed alike, then alternating rounds. */
async function phase(o: MetricsCostOptions, order: readonly [Side, Side]): Promise<Record<Side, Tally>> {
  const targets: Partial<Record<Side, CostTarget>> = {};
  try {
    for (const side of order) targets[side] = await o.start(o.control ? 'off' : side);
    const t = { off: targets.off!, on: targets.on! };
    for (const side of order) for (let i = 0; i < o.warmup; i++) await t[side].request(i);
    const pids = { off: platformPids(t.off.home), on: platformPids(t.on.home) };
    const tally = empty();
    const before = await recordingsSoFar(t.on.metricsUrls);
    for (let r = 0; r < o.rounds; r++) {
      const sides = r % 2 === 0 ? order : ([order[1], order[0]] as const);
      for (const side of sides) {
        for (let i = 0; i < o.sequential; i++) tally[side].lat.push(await t[side].request(i));
        const cpu0 = cpuSeconds(pids[side]);
        const done = await throughput(t[side].request, o.seconds, o.concurrency);
        tally[side].cpu += cpuSeconds(pids[side]) - cpu0;
        tally[side].n += done.n;
        tally[side].secs += done.secs;
      }
    }
    tally.on.recordings = (await recordingsSoFar(t.on.metricsUrls)) - before;
    tally.on.requests = tally.on.lat.length + tally.on.n;
    return tally;
  } finally {
    for (const side of order) await targets[side]?.stop();
  }
}

/** Counter and histogram metrics a request can move (gauges and process metrics are read at scrape time only). */
const RECORDED = (Object.values(METRICS) as MetricDef[]).filter((d) => d.kind !== 'gauge' && d.owner !== 'all');

/**
 * Recordings so far across the services: each counter's total (one add per increment),
 * each histogram's `_count`; the token counter adds n per call, so its calls are counted
 * as two per successful LLM request (input and output: orchestrator llm/client.ts).
 */
async function recordingsSoFar(urls: readonly string[]): Promise<number> {
  const scrapes: Exposition[] = await Promise.all(urls.map((u) => scrape(u)));
  let n = 0;
  for (const exp of scrapes)
    for (const d of RECORDED) {
      if (d === METRICS.llmTokens) n += 2 * sampleSum(exp, METRICS.llmRequests.name, { outcome: 'ok' });
      else n += sampleSum(exp, d.kind === 'histogram' ? `${d.name}_count` : d.name);
    }
  return n;
}

/** CPU ns per call of `fn`, the median of 7 runs of `n` calls. */
function cpuNsPerCall(fn: (i: number) => void, n = 200_000): number {
  const runs: number[] = [];
  for (let r = 0; r < 7; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) fn(i);
    const c = process.cpuUsage(c0);
    runs.push(((c.user + c.system) * 1000) / n);
  }
  return summarize(runs).p50;
}

/**
 * What one recording costs this process's CPU with a live meter provider, less what the
 * no-op instruments of TALON_METRICS=off cost: a counter add with three labels and a
 * histogram record with one, the shapes of the hot paths (egress decisions, search durations),
 * label values cycling through a few series as in a service.
 */
export function measureRecordingNs(): number {
  const c = counter(METRICS.egressDecisions);
  const h = histogram(METRICS.memorySearchDuration);
  const reasons = ['allowed', 'host_not_allowed', 'secret_leak_blocked', 'none'];
  const methods = ['hybrid', 'vector', 'keyword', 'recall'];
  const record = (i: number) => {
    if (i % 2 === 0) c.add({ principal_kind: 'service', decision: 'allow', reason: reasons[i & 3]! });
    else h.record((i & 7) / 100, { method: methods[i & 3]! });
  };
  const noop = cpuNsPerCall(record);
  initMetrics('bench', { enabled: true, env: {} });
  return cpuNsPerCall(record) - noop;
}

export async function measureMetricsCost(o: MetricsCostOptions): Promise<MetricsCost> {
  const phases = [await phase(o, ['off', 'on']), await phase(o, ['on', 'off'])];
  const all = empty();
  for (const p of phases)
    for (const side of ['off', 'on'] as const) {
      all[side].lat.push(...p[side].lat);
      all[side].n += p[side].n;
      all[side].secs += p[side].secs;
      all[side].cpu += p[side].cpu;
      all[side].recordings += p[side].recordings;
      all[side].requests += p[side].requests;
    }
  const res = (side: Side): SideResult => {
    const s = summarize(all[side].lat);
    return { rps: rps(all[side]), p50: s.p50, p99: s.p99, cpuMs: (all[side].cpu * 1000) / all[side].n };
  };
  const off = res('off');
  const on = res('on');
  return {
    off,
    on,
    phaseRpsChangePct: phases.map(changePct),
    rpsChangePct: changePct(all),
    p50DeltaMs: on.p50 - off.p50,
    recordingsPerRequest: all.on.recordings / all.on.requests,
    nsPerRecording: measureRecordingNs(),
  };
}

export function printMetricsCost(title: string, o: MetricsCostOptions, c: MetricsCost): void {
  const sides = o.control ? 'CONTROL RUN, metrics off on both sides ("on" is a second "off")' : 'metrics off vs on';
  console.log(
    `\n${title}: ${sides}, two fresh pairs (start order swapped), ${o.rounds} alternating rounds each of ${o.sequential} sequential requests (${o.unit}) and ${o.seconds}s at concurrency ${o.concurrency}`,
  );
  console.log(
    table(
      ['TALON_METRICS', 'req/s', 'p50 ms', 'p99 ms', 'platform CPU ms/request'],
      [
        ['off', fmt(c.off.rps, 0), fmt(c.off.p50, 3), fmt(c.off.p99, 3), fmt(c.off.cpuMs, 3)],
        ['on', fmt(c.on.rps, 0), fmt(c.on.p50, 3), fmt(c.on.p99, 3), fmt(c.on.cpuMs, 3)],
      ],
    ),
  );
  console.log(`req/s change with metrics on, per phase: ${c.phaseRpsChangePct.map((p) => `${fmt(p, 2)} %`).join(', ')}`);
  console.log(
    `metrics cost, end to end: ${fmt(-c.rpsChangePct, 2)} % req/s, ${fmt(c.p50DeltaMs, 3)} ms p50 (target: under 2 % req/s, under 0.1 ms p50); ` +
      `platform CPU per request ${fmt(((c.on.cpuMs - c.off.cpuMs) / c.off.cpuMs) * 100, 2)} %`,
  );
  // The end-to-end figures move by several per cent between identical platforms on a shared
  // 2-core machine (see a control run); the recording cost below is what metrics add, measured directly.
  if (o.control) return;
  const addedUs = (c.recordingsPerRequest * c.nsPerRecording) / 1000;
  console.log(
    `metrics cost, measured directly: ${fmt(c.recordingsPerRequest, 2)} recordings per request × ${fmt(c.nsPerRecording, 0)} ns = ` +
      `${fmt(addedUs, 2)} µs CPU per request = ${fmt((addedUs / 1000 / c.off.cpuMs) * 100, 3)} % of the ${fmt(c.off.cpuMs, 3)} ms CPU a request costs the platform with metrics off`,
  );
}
