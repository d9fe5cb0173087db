// Turn latency through the whole pipeline with a zero-latency fake LLM, next to
// its baseline (the same request sent straight to the fake LLM) in one run.
// Reports p50/p99 and turns/s, sequential and at 16 concurrent, and the
// pipeline's own overhead (Talon latency minus the direct-to-LLM latency). Then the
// cost of metrics: two fresh platforms, TALON_METRICS=off and on, side by side
// in alternating rounds (bench/metrics-cost.ts; --metrics-rounds 0 skips it).
//   npm run bench:turn [-- --turns 500 --metrics-rounds 4 --metrics-control]
// (--metrics-control: both sides off, to see how far two identical platforms drift apart)
// Memory indexes a turn's messages after the turn (architecture.md §3), on the same database:
// after each mode it reports how many messages were still waiting and how long they took, and
// the turns/s counting that catch-up, the rate the platform can keep up.
import { benchArgs } from './args.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Agent, request } from 'undici';
import { pgClientConfig } from '@talon/kit/db';
import { createClient, readTls, unary } from '@talon/kit/grpc';
import { EgressServiceClient } from '@talon/proto';
import { SERVICES } from '@talon/kit/service';
import { INDEXED_ROLES } from '../services/memory/src/store.ts';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import { benchTurn, fmt, machine, summarize, table } from './lib.ts';
import { measureMetricsCost, printMetricsCost } from './metrics-cost.ts';

const { values } = benchArgs({
  options: {
    turns: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '16' },
    'metrics-rounds': { type: 'string', default: '4' },
    'metrics-control': { type: 'boolean', default: false },
  },
});
const METRICS_ROUNDS = Number(values['metrics-rounds']);
const TURNS = Number(values.turns);
const CONC = Number(values.concurrency);

// Rate limits are raised: the bench measures the pipeline, not the limiter.
const platform = (metrics: 'on' | 'off') =>
  startTestPlatform({
    env: {
      TALON_LOG_LEVEL: 'warn',
      TALON_METRICS: metrics,
      ORCHESTRATOR_ACK_WAIT_MS: '30000',
      GATEWAY_RATE_LIMIT_TOKEN_PER_MIN: '1000000',
      GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN: '1000000',
    },
  });
const tp = await platform('on');
const token = await tp.token('bench');
const agent = new Agent({ connections: CONC * 2, pipelining: 1 });
const viaTalon = (i: number) => turnOn(tp, token, i);
const turnOn = (p: TestPlatform, tok: string, i: number): Promise<number> => benchTurn(p.gatewayUrl, tok, i, agent);

async function direct(i: number): Promise<number> {
  const t0 = performance.now();
  const res = await request(`${tp.llm!.url}/chat/completions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'fake-model',
      messages: [
        { role: 'system', content: 'x' },
        { role: 'user', content: `turn ${i}` },
      ],
    }),
  });
  await res.body.text();
  return performance.now() - t0;
}

async function run(fn: (i: number) => Promise<number>, n: number, conc: number): Promise<{ lat: number[]; secs: number }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n) {
        const i = next++;
        lat.push(await fn(i));
      }
    }),
  );
  return { lat, secs: (performance.now() - t0) / 1000 };
}

/** Messages memory has stored but not yet indexed (chunked, embedded, in the HNSW index). */
const db = new pg.Client(pgClientConfig(tp.platform.adminDatabaseUrl()));
await db.connect();
const unindexed = async (): Promise<number> =>
  (
    await db.query<{ n: number }>(
      'select count(*)::int as n from memory.conversation_history where indexed_at is null and role = any($1::text[])',
      [[...INDEXED_ROLES]],
    )
  ).rows[0]!.n;
const CATCH_UP_LIMIT_S = 300;

/** Waits until memory has indexed every message: how many waited, and for how long. */
async function indexingCatchUp(): Promise<{ left: number; secs: number }> {
  const t0 = performance.now();
  const left = await unindexed();
  let n = left;
  while (n > 0 && performance.now() - t0 < CATCH_UP_LIMIT_S * 1000) {
    await sleep(50);
    n = await unindexed();
  }
  if (n > 0) throw new Error(`memory left ${n} messages unindexed ${CATCH_UP_LIMIT_S} s after the run`);
  return { left, secs: left > 0 ? (performance.now() - t0) / 1000 : 0 };
}

console.log(`bench:turn on ${machine()}; ${TURNS} turns per mode; database=${tp.database}`);
// Warm up connections, JIT and pools.
await run(viaTalon, 50, 4);
await run(direct, 50, 4);
await indexingCatchUp();

const rows: Array<Array<string | number>> = [];
const results: Record<string, { p50: number; p99: number }> = {};
const catchUp: string[] = [];
for (const [mode, conc] of [
  ['sequential', 1],
  [`${CONC} concurrent`, CONC],
] as const) {
  const base = await run(direct, TURNS, conc);
  const talon = await run(viaTalon, TURNS, conc);
  const idx = await indexingCatchUp();
  catchUp.push(
    `  ${mode.padEnd(14)} ${idx.left} message${idx.left === 1 ? '' : 's'} unindexed when the last turn answered, all indexed ${fmt(idx.secs, 2)} s later; ` +
      `${fmt(TURNS / (talon.secs + idx.secs), 0)} turns/s counting that (${fmt(TURNS / talon.secs, 0)} without)`,
  );
  const b = summarize(base.lat);
  const t = summarize(talon.lat);
  results[mode] = { p50: t.p50 - b.p50, p99: t.p99 - b.p99 };
  rows.push([`direct to fake LLM (${mode})`, fmt(b.p50), fmt(b.p99), fmt(TURNS / base.secs, 0)]);
  rows.push([`through Talon (${mode})`, fmt(t.p50), fmt(t.p99), fmt(TURNS / talon.secs, 0)]);
}
// Inbound scanning: the RedactText call the gateway makes for every turn (its certificate, the turn's text),
// measured alone against the same egress — this is what it adds to a turn's latency.
const pki = join(tp.home, 'pki');
const gwTls = readTls({ caFile: join(pki, 'ca.crt'), certFile: join(pki, 'gateway.crt'), keyFile: join(pki, 'gateway.key') });
const egressApi = createClient(EgressServiceClient, `127.0.0.1:${tp.ports.grpc.egress}`, gwTls, 'egress');
const redact = async (i: number) => {
  const t0 = performance.now();
  await unary(egressApi, egressApi.redactText, { texts: [`turn ${i}: how fast is the pipeline?`] });
  return performance.now() - t0;
};
await run(redact, 200, 1);
const scan = summarize((await run(redact, TURNS, 1)).lat);
egressApi.close();
rows.push(['inbound scan alone (RedactText, sequential)', fmt(scan.p50), fmt(scan.p99), '-']);
console.log(`\n${table(['path', 'p50 ms', 'p99 ms', 'turns/s'], rows)}`);
console.log('\npipeline overhead (Talon minus direct):');
for (const [mode, r] of Object.entries(results)) console.log(`  ${mode.padEnd(14)} p50 ${fmt(r.p50)} ms   p99 ${fmt(r.p99)} ms`);
console.log('  target: p50 overhead under 15 ms');
console.log(`indexing after the turns (memory's background pass, on the same database):\n${catchUp.join('\n')}`);
console.log(
  `inbound credential scan (part of the overhead above): p50 ${fmt(scan.p50)} ms, p99 ${fmt(scan.p99)} ms; target p50 under 1 ms`,
);

if (METRICS_ROUNDS > 0) {
  const opts = {
    start: async (metrics: 'on' | 'off') => {
      const p = await platform(metrics);
      const tok = await p.token('bench');
      return {
        request: (i: number) => turnOn(p, tok, i),
        stop: () => p.stop(),
        home: p.home,
        metricsUrls: SERVICES.map((s) => `${p.platform.internalUrl(s)}/metrics`),
      };
    },
    rounds: METRICS_ROUNDS,
    control: values['metrics-control'],
    warmup: 100,
    sequential: Math.max(20, Math.round(TURNS / METRICS_ROUNDS / 2)),
    seconds: 5,
    concurrency: CONC,
    unit: 'turn',
  };
  printMetricsCost('bench:turn', opts, await measureMetricsCost(opts));
}
await agent.close();
await db.end();
await tp.stop();
