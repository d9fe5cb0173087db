// Turns/s with one and with two orchestrators and gateways (native PostgreSQL, a
// zero-latency fake LLM), at 16 and 64 concurrent, in one run: the horizontal-scaling
// figure of deploy/README.md. Clients spread their turns over the gateways round robin,
// as a load balancer would.
//   npm run bench:scale [-- --turns 600]
import { benchArgs } from './args.ts';
import { Agent, request } from 'undici';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({ options: { turns: { type: 'string', default: '600' } } });
const TURNS = Number(values.turns);
process.env.TALON_TEST_DATABASE ??= 'native';

async function measure(tp: TestPlatform, conc: number, n: number): Promise<{ lat: number[]; secs: number }> {
  const token = await tp.token('bench');
  const urls = tp.platform.gatewayUrls;
  const agent = new Agent({ connections: conc * 2, pipelining: 1 });
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n) {
        const i = next++;
        const s = performance.now();
        const res = await request(`${urls[i % urls.length]}/v1/chat/completions`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-talon-conversation': `scale-${i % 64}` },
          body: JSON.stringify({ messages: [{ role: 'user', content: `turn ${i}` }] }),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`turn ${i}: HTTP ${res.statusCode} ${text}`);
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  await agent.close();
  return { lat, secs };
}

console.log(`bench:scale on ${machine()}; ${TURNS} turns per row; database=${process.env.TALON_TEST_DATABASE}`);
const rows: Array<Array<string | number>> = [];
for (const n of [1, 2]) {
  const tp = await startTestPlatform({
    replicas: { orchestrator: n, gateway: n },
    env: {
      TALON_LOG_LEVEL: 'warn',
      GATEWAY_RATE_LIMIT_TOKEN_PER_MIN: '1000000',
      GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN: '1000000',
    },
  });
  try {
    await measure(tp, 8, 100); // warm-up
    for (const conc of [16, 64]) {
      const r = await measure(tp, conc, TURNS);
      const s = summarize(r.lat);
      rows.push([`${n} orchestrator(s) + ${n} gateway(s)`, conc, fmt(TURNS / r.secs, 1), fmt(s.p50), fmt(s.p99)]);
    }
  } finally {
    await tp.stop();
  }
}
console.log(`\n${table(['replicas', 'concurrent', 'turns/s', 'p50 ms', 'p99 ms'], rows)}`);
console.log('\nOn one 2-core machine the replicas share the same CPUs: the figure shows the cost of the extra hops, not capacity.');
