// Egress throughput and added latency, side by side in one run:
//   direct           client -> upstream
//   talon egress     client -(mTLS)-> egress -> upstream, scanning on and a secret
//                    injected from the vault on every request
//   mitmdump         client -> mitmdump (regular proxy mode) -> upstream
//   tinyproxy        client -> tinyproxy -> upstream
// for 1 KiB and 256 KiB POST bodies. req/s at a fixed concurrency, and p50/p99
// latency of sequential requests (added latency = proxy p50 - direct p50). Then the
// cost of metrics: two fresh vault+egress pairs, TALON_METRICS=off and on, side by side
// in alternating rounds (bench/metrics-cost.ts; --metrics-rounds 0 skips it).
//   npm run bench:egress [-- --seconds 5 --concurrency 16 --metrics-rounds 4 --metrics-control]
// (--metrics-control: both sides off, to see how far two identical platforms drift apart)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.ts';
import { Pool, type Dispatcher } from 'undici';
import { diesWithParent } from '@talon/cli/process';
import { freePort, mitmdumpAvailable, startMitmdump, type Mitmdump, type TestPlatform } from '@talon/testkit';
import { fmt, machine, summarize, table } from './lib.ts';
import { startBenchUpstream, startEgressBench } from './egress-platform.ts';
import { measureMetricsCost, printMetricsCost } from './metrics-cost.ts';

const { values } = benchArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '16' },
    sequential: { type: 'string', default: '1000' },
    'metrics-rounds': { type: 'string', default: '4' },
    'metrics-control': { type: 'boolean', default: false },
  },
});
const METRICS_ROUNDS = Number(values['metrics-rounds']);
const SECONDS = Number(values.seconds);
const CONC = Number(values.concurrency);
const SEQ = Number(values.sequential);
const dir = mkdtempSync(join(tmpdir(), 'talon-bench-egress-'));

const { process: upstream, port: upstreamPort } = await startBenchUpstream();
const target = `http://127.0.0.1:${upstreamPort}`;

const platform = (metrics: 'on' | 'off') => startEgressBench({ dir, upstreamPort, metrics });
const { tp, injecting } = await platform('on');

let mitm: Mitmdump | undefined;
let tiny: ChildProcess | undefined;
let tinyPort = 0;
// No per-flow logging: measure the proxy, not its console.
if (mitmdumpAvailable()) mitm = await startMitmdump(join(dir, 'mitm'), [], { flowDetail: 0 });
const tinyBin = spawnSync('sh', ['-c', 'command -v tinyproxy || ls /usr/bin/tinyproxy'], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
if (tinyBin) {
  tinyPort = await freePort();
  writeFileSync(
    join(dir, 'tinyproxy.conf'),
    `Port ${tinyPort}\nListen 127.0.0.1\nTimeout 60\nMaxClients 200\nLogLevel Critical\nAllow 127.0.0.1\nDisableViaHeader Yes\n`,
  );
  tiny = spawn(...diesWithParent(tinyBin, ['-d', '-c', join(dir, 'tinyproxy.conf')]), { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
}

interface Path {
  name: string;
  dispatcher: Dispatcher;
  path: (p: string) => string;
  headers: Record<string, string>;
}
function egressPool(p: TestPlatform = tp): Pool {
  const pki = join(p.home, 'pki');
  return new Pool(`https://127.0.0.1:${p.ports.egressProxy}`, {
    connections: CONC,
    connect: {
      ca: readFileSync(join(pki, 'ca.crt')),
      cert: readFileSync(join(pki, 'orchestrator.crt')),
      key: readFileSync(join(pki, 'orchestrator.key')),
      servername: 'egress',
    },
  });
}
const paths: Path[] = [
  { name: 'direct', dispatcher: new Pool(target, { connections: CONC }), path: (p) => p, headers: {} },
  { name: 'talon egress (mTLS, scan)', dispatcher: egressPool(), path: (p) => `${target}${p}`, headers: {} },
  ...(injecting
    ? [
        {
          name: 'talon egress (mTLS, scan + inject)',
          dispatcher: egressPool(),
          path: (p: string) => `${target}${p}`,
          headers: { authorization: 'Bearer {{secret:bench_key}}' },
        },
      ]
    : []),
];
if (mitm)
  paths.push({
    name: 'mitmdump 8.1 (regular proxy)',
    dispatcher: new Pool(`http://127.0.0.1:${mitm.port}`, { connections: CONC }),
    path: (p) => `${target}${p}`,
    headers: {},
  });
if (tiny)
  paths.push({
    name: 'tinyproxy',
    dispatcher: new Pool(`http://127.0.0.1:${tinyPort}`, { connections: CONC }),
    path: (p) => `${target}${p}`,
    headers: {},
  });

async function once(p: Path, body: Buffer): Promise<number> {
  const t0 = performance.now();
  const send = () =>
    p.dispatcher.request({
      method: 'POST',
      path: p.path('/echo'),
      headers: { 'content-type': 'application/octet-stream', ...p.headers },
      body,
    });
  let res;
  try {
    res = await send();
  } catch (err) {
    // A proxy may close a kept-alive connection after a response (tinyproxy does): retry once on a fresh one.
    if ((err as { code?: string }).code !== 'UND_ERR_SOCKET') throw new Error(`${p.name}: ${(err as Error).message}`, { cause: err });
    res = await send();
  }
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${p.name}: HTTP ${res.statusCode}`);
  return performance.now() - t0;
}

async function throughput(p: Path, body: Buffer): Promise<number> {
  let n = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      while (performance.now() < end) {
        await once(p, body);
        n += 1;
      }
    }),
  );
  return n / SECONDS;
}

console.log(`bench:egress on ${machine()}; ${SECONDS}s per throughput run at concurrency ${CONC}; ${SEQ} sequential requests for latency`);
const rows: Array<Array<string | number>> = [];
const summary: Record<string, { rps: number; p50: number }> = {};
for (const size of [1024, 256 * 1024]) {
  const body = Buffer.alloc(size, 'a');
  let directP50 = NaN;
  for (const p of paths) {
    for (let i = 0; i < 20; i++) await once(p, body); // warm-up
    const lat: number[] = [];
    // A fixed number of requests, but never more than 15 s per path (a slow proxy still gets measured).
    const until = performance.now() + 15_000;
    for (let i = 0; i < (size > 1024 ? SEQ / 4 : SEQ) && performance.now() < until; i++) lat.push(await once(p, body));
    const s = summarize(lat);
    if (p.name === 'direct') directP50 = s.p50;
    const rps = await throughput(p, body);
    summary[`${p.name}@${size}`] = { rps, p50: s.p50 };
    rows.push([
      `${size / 1024} KiB`,
      p.name,
      fmt(rps, 0),
      fmt(s.p50, 3),
      fmt(s.p99, 3),
      p.name === 'direct' ? '-' : fmt(s.p50 - directP50, 3),
    ]);
  }
}
console.log(`\n${table(['body', 'path', 'req/s', 'p50 ms', 'p99 ms', 'added p50 ms'], rows)}`);
const talon1 = summary['talon egress (mTLS, scan)@1024'];
const mitm1 = summary['mitmdump 8.1 (regular proxy)@1024'];
const inject1 = summary['talon egress (mTLS, scan + inject)@1024'];
if (talon1 && mitm1)
  console.log(
    `\ntalon egress / mitmdump req/s at 1 KiB: ${fmt(talon1.rps / mitm1.rps, 1)}x scan only, ${inject1 ? fmt(inject1.rps / mitm1.rps, 1) : '-'}x with injection (target: at least 3x)`,
  );
console.log('target: added p50 latency under 1 ms at 1 KiB');

if (METRICS_ROUNDS > 0) {
  // The whole hot path: scan, and injection (a vault resolve) when the secret could be stored.
  const body = Buffer.alloc(1024, 'a');
  let unit = '1 KiB request';
  const opts = {
    start: async (metrics: 'on' | 'off') => {
      const p = await platform(metrics);
      unit = `1 KiB request (${p.injecting ? 'scan + inject' : 'scan'})`;
      const path: Path = {
        name: 'talon egress',
        dispatcher: egressPool(p.tp),
        path: (x) => `${target}${x}`,
        headers: p.injecting ? { authorization: 'Bearer {{secret:bench_key}}' } : {},
      };
      return {
        request: () => once(path, body),
        stop: async () => {
          await path.dispatcher.close();
          await p.tp.stop();
        },
        home: p.tp.home,
        metricsUrls: (['vault', 'egress'] as const).map((s) => `${p.tp.platform.internalUrl(s)}/metrics`),
      };
    },
    rounds: METRICS_ROUNDS,
    control: values['metrics-control'],
    warmup: 500,
    sequential: Math.max(100, Math.round(SEQ / METRICS_ROUNDS)),
    seconds: SECONDS,
    concurrency: CONC,
    get unit() {
      return unit;
    },
  };
  printMetricsCost('bench:egress', opts, await measureMetricsCost(opts));
}

for (const p of paths) await p.dispatcher.close();
await mitm?.stop();
tiny?.kill('SIGTERM');
upstream.kill('SIGTERM');
await tp.stop();
