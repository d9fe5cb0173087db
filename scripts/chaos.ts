// `npm run chaos`: turns under faults, then every turn looked up in memory.
//   npm run chaos                         3-node NATS cluster, two of every service, native PostgreSQL
//   npm run chaos -- --mode single        one of each as `talon up` (embedded database unless TALON_TEST_DATABASE=native)
//   npm run chaos -- --shared-postgres    use TALON_TEST_DATABASE_URL's server and drop its connections instead of
//                                         restarting a PostgreSQL server of the run's own
// The last line is `turns N, answered N, lost 0, duplicated 0; during chaos p50 … p99 … (calm …)`; exit 1 if any turn was lost or doubled.
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { Chaos, chaosLine } from '@talon/testkit';

const { values } = parseArgs({
  options: {
    turns: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    mode: { type: 'string', default: 'cluster' },
    'shared-postgres': { type: 'boolean', default: false },
  },
});
const mode = values.mode === 'single' ? 'single' : 'cluster';
// The cluster runs against the PostgreSQL server; single mode follows TALON_TEST_DATABASE.
if (mode === 'cluster') process.env.TALON_TEST_DATABASE ??= 'native';
// Ctrl-C or a kill ends the run through process exit, whose handlers stop every process it started.
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const)
  process.once(sig, () => process.exit(code));
const t0 = Date.now();
const report = await new Chaos({
  turns: Number(values.turns),
  concurrency: Number(values.concurrency),
  mode,
  postgres: values['shared-postgres'] ? 'shared' : 'private',
  log: (line) => console.log(`[chaos ${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`),
}).run();
console.log(
  `\nfaults (load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}):`,
);
for (const f of report.faults) console.log(`  ${f}`);
console.log(
  `answered from memory after a cut-off connection: ${report.answeredViaHistory}; cut off before being queued, sent again: ${report.resentNotAccepted}; turns the model was asked twice: ${report.llmRepeats}`,
);
for (const p of report.problems.slice(0, 20)) console.log(`  problem: ${p}`);
console.log(chaosLine(report));
process.exit(report.lost === 0 && report.duplicated === 0 ? 0 : 1);
