// CPU profile of the egress proxy under POST load (what bench:egress measures, one path):
//   node bench/egress-profile.ts [--kib 256] [--seconds 5] [--concurrency 16] [--no-prof]
// Starts vault+egress (egress with --cpu-prof unless --no-prof), a local upstream, drives
// scan + inject requests, prints req/s and where the .cpuprofile files went.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.ts';
import { Pool } from 'undici';
import { startBenchUpstream, startEgressBench } from './egress-platform.ts';
import { cpuSeconds, platformPids } from './lib.ts';

const { values } = benchArgs({
  options: {
    kib: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '16' },
    'no-prof': { type: 'boolean', default: false },
  },
});
const SIZE = Number(values.kib) * 1024;
const SECONDS = Number(values.seconds);
const CONC = Number(values.concurrency);
const dir = mkdtempSync(join(tmpdir(), 'talon-egress-profile-'));
const profDir = join(dir, 'prof');

const { process: upstream, port: upstreamPort } = await startBenchUpstream();
const target = `http://127.0.0.1:${upstreamPort}`;
const { tp } = await startEgressBench({
  dir,
  upstreamPort,
  nodeArgs: values['no-prof'] ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir],
});
const pki = join(tp.home, 'pki');
const pool = new Pool(`https://127.0.0.1:${tp.ports.egressProxy}`, {
  connections: CONC,
  connect: {
    ca: readFileSync(join(pki, 'ca.crt')),
    cert: readFileSync(join(pki, 'orchestrator.crt')),
    key: readFileSync(join(pki, 'orchestrator.key')),
    servername: 'egress',
  },
});
const body = Buffer.alloc(SIZE, 'a');
const once = async () => {
  const res = await pool.request({
    method: 'POST',
    path: `${target}/echo`,
    headers: { 'content-type': 'application/octet-stream', authorization: 'Bearer {{secret:bench_key}}' },
    body,
  });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
};
for (let i = 0; i < 50; i++) await once();
/** The egress process of this platform (its TALON_HOME) and its CPU seconds so far. */
const egressPids = platformPids(tp.home, 'services/egress/src/main.ts');
const egressCpu = (): number => (egressPids.length === 1 ? cpuSeconds(egressPids) : NaN);
const cpu0 = egressCpu();
let n = 0;
const end = performance.now() + SECONDS * 1000;
await Promise.all(
  Array.from({ length: CONC }, async () => {
    while (performance.now() < end) {
      await once();
      n++;
    }
  }),
);
const cpuMs = ((egressCpu() - cpu0) * 1000) / n;
console.log(
  `${values.kib} KiB scan + inject: ${(n / SECONDS).toFixed(0)} req/s at concurrency ${CONC}; ` +
    `egress CPU ${cpuMs.toFixed(2)} ms per request (all its threads; robust to other load, unlike req/s)`,
);
await pool.close();
await tp.stop();
upstream.kill('SIGTERM');
if (!values['no-prof']) console.log(`profiles in ${profDir}`);
