// The cost of metrics on a hot path, measured in one run: two platforms side by side,
// one with TALON_METRICS=off and one with metrics on, driven in alternating rounds
// (off-on, on-off, ...) so drift in the machine's load falls on both alike. Each round
// takes sequential latencies (p50) and a fixed-duration throughput at a concurrency.
import { fmt, summarize, table } from './lib.ts';

export interface MetricsCostOptions {
  /** One request on each platform; resolves to its latency in ms. */
  off: (i: number) => Promise<number>;
  on: (i: number) => Promise<number>;
  rounds: number;
  /** Sequential requests per round and side (latency). */
  sequential: number;
  /** Seconds of concurrent requests per round and side (throughput). */
  seconds: number;
  concurrency: number;
  /** What a request is, for the table (`turn`, `1 KiB request`). */
  unit: string;
}

export interface MetricsCost {
  off: { rps: number; p50: number; p99: number };
  on: { rps: number; p50: number; p99: number };
  /** (on - off) / off, in percent; negative: metrics on was slower. */
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

export async function measureMetricsCost(o: MetricsCostOptions): Promise<MetricsCost> {
  const sides = { off: o.off, on: o.on };
  const lat: Record<'off' | 'on', number[]> = { off: [], on: [] };
  const done: Record<'off' | 'on', { n: number; secs: number }> = { off: { n: 0, secs: 0 }, on: { n: 0, secs: 0 } };
  for (const side of ['off', 'on'] as const) for (let i = 0; i < 20; i++) await sides[side](i); // warm-up
  for (let r = 0; r < o.rounds; r++) {
    const order = r % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const);
    for (const side of order) {
      for (let i = 0; i < o.sequential; i++) lat[side].push(await sides[side](i));
      const t = await throughput(sides[side], o.seconds, o.concurrency);
      done[side].n += t.n;
      done[side].secs += t.secs;
    }
  }
  const res = (side: 'off' | 'on') => {
    const s = summarize(lat[side]);
    return { rps: done[side].n / done[side].secs, p50: s.p50, p99: s.p99 };
  };
  const off = res('off');
  const on = res('on');
  return { off, on, rpsChangePct: ((on.rps - off.rps) / off.rps) * 100, p50DeltaMs: on.p50 - off.p50 };
}

export function printMetricsCost(title: string, o: MetricsCostOptions, c: MetricsCost): void {
  console.log(
    `\n${title}: metrics off vs on, ${o.rounds} alternating rounds of ${o.sequential} sequential requests (${o.unit}) and ${o.seconds}s at concurrency ${o.concurrency}`,
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
  console.log(
    `metrics cost: ${fmt(-c.rpsChangePct, 2)} % req/s, ${fmt(c.p50DeltaMs, 3)} ms p50 (target: under 2 % req/s, under 0.1 ms p50)`,
  );
}
