// The cost of metrics on a hot path, measured in one run. Two fresh platforms side by
// side, one with TALON_METRICS=off and one with metrics on, warmed up alike and driven in
// alternating rounds (off-on, on-off, ...) so drift in the machine's load falls on both
// alike. The whole comparison runs twice with the start order swapped (a new pair each
// time), so neither side is always the older, warmer or first-started platform — an
// earlier version compared a fresh platform with one that had run the whole bench, and
// metrics "on" came out faster.
import { fmt, summarize, table } from './lib.ts';

type Side = 'off' | 'on';

/** One platform under test: a request resolves to its latency in ms. */
export interface CostTarget {
  request: (i: number) => Promise<number>;
  stop: () => Promise<void>;
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
}

interface SideResult {
  rps: number;
  p50: number;
  p99: number;
}

export interface MetricsCost {
  off: SideResult;
  on: SideResult;
  /** (on - off) / off per phase, in percent; negative: metrics on was slower. */
  phaseRpsChangePct: number[];
  /** (on - off) / off over both phases, in percent. */
  rpsChangePct: number;
  p50DeltaMs: number;
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
}
const empty = (): Record<Side, Tally> => ({ off: { lat: [], n: 0, secs: 0 }, on: { lat: [], n: 0, secs: 0 } });
const rps = (t: Tally) => t.n / t.secs;
const changePct = (t: Record<Side, Tally>) => ((rps(t.on) - rps(t.off)) / rps(t.off)) * 100;

/** One phase: a fresh pair started in `order`, warmed alike, then alternating rounds. */
async function phase(o: MetricsCostOptions, order: readonly [Side, Side]): Promise<Record<Side, Tally>> {
  const targets: Partial<Record<Side, CostTarget>> = {};
  try {
    for (const side of order) targets[side] = await o.start(side);
    const t = { off: targets.off!, on: targets.on! };
    for (const side of order) for (let i = 0; i < o.warmup; i++) await t[side].request(i);
    const tally = empty();
    for (let r = 0; r < o.rounds; r++) {
      const sides = r % 2 === 0 ? order : ([order[1], order[0]] as const);
      for (const side of sides) {
        for (let i = 0; i < o.sequential; i++) tally[side].lat.push(await t[side].request(i));
        const done = await throughput(t[side].request, o.seconds, o.concurrency);
        tally[side].n += done.n;
        tally[side].secs += done.secs;
      }
    }
    return tally;
  } finally {
    for (const side of order) await targets[side]?.stop();
  }
}

export async function measureMetricsCost(o: MetricsCostOptions): Promise<MetricsCost> {
  const phases = [await phase(o, ['off', 'on']), await phase(o, ['on', 'off'])];
  const all = empty();
  for (const p of phases)
    for (const side of ['off', 'on'] as const) {
      all[side].lat.push(...p[side].lat);
      all[side].n += p[side].n;
      all[side].secs += p[side].secs;
    }
  const res = (side: Side): SideResult => {
    const s = summarize(all[side].lat);
    return { rps: rps(all[side]), p50: s.p50, p99: s.p99 };
  };
  const off = res('off');
  const on = res('on');
  return { off, on, phaseRpsChangePct: phases.map(changePct), rpsChangePct: changePct(all), p50DeltaMs: on.p50 - off.p50 };
}

export function printMetricsCost(title: string, o: MetricsCostOptions, c: MetricsCost): void {
  console.log(
    `\n${title}: metrics off vs on, two fresh pairs (start order swapped), ${o.rounds} alternating rounds each of ${o.sequential} sequential requests (${o.unit}) and ${o.seconds}s at concurrency ${o.concurrency}`,
  );
  console.log(
    table(
      ['TALON_METRICS', 'req/s', 'p50 ms', 'p99 ms'],
      [
        ['off', fmt(c.off.rps, 0), fmt(c.off.p50, 3), fmt(c.off.p99, 3)],
        ['on', fmt(c.on.rps, 0), fmt(c.on.p50, 3), fmt(c.on.p99, 3)],
      ],
    ),
  );
  console.log(`req/s change with metrics on, per phase: ${c.phaseRpsChangePct.map((p) => `${fmt(p, 2)} %`).join(', ')}`);
  console.log(
    `metrics cost: ${fmt(-c.rpsChangePct, 2)} % req/s, ${fmt(c.p50DeltaMs, 3)} ms p50 (target: under 2 % req/s, under 0.1 ms p50)`,
  );
}
