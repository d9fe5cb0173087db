// Where a chat turn's time goes, per process: starts a test platform whose service
// processes run with --cpu-prof (unless --no-prof), drives sequential turns through
// the gateway as bench:turn does, and prints each process's CPU milliseconds per turn,
// with the part spent in the kernel (the services and the embedded database), and where
// the .cpuprofile files went. --strace adds the system calls each process made per turn;
// --statements (embedded database) the milliseconds PGlite's one thread spent per turn on
// each SQL statement (pglite-server --profile-statements).
//   npm run bench:turn-profile [-- --turns 300 --no-prof --strace --statements]   (TALON_TEST_DATABASE=native for native PostgreSQL)
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { benchArgs } from './args.ts';
import { mkdirSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Agent } from 'undici';
import { formatStatementRows, type StatementRow } from '@talon/cli/statement-profile';
import { startTestPlatform, testDatabaseKind, waitFor } from '@talon/testkit';
import { benchTurn, cpuSeconds, pidsWhere, platformPids, summarize, fmt } from './lib.ts';

const { values } = benchArgs({
  options: {
    turns: { type: 'string', default: '300' },
    'no-prof': { type: 'boolean', default: false },
    strace: { type: 'boolean', default: false },
    statements: { type: 'boolean', default: false },
  },
});
if (values.statements && testDatabaseKind() !== 'embedded') {
  process.stderr.write('bench:turn-profile: --statements profiles the embedded database; unset TALON_TEST_DATABASE=native\n');
  process.exit(64);
}
const TURNS = Number(values.turns);
const profDir = join(tmpdir(), `talon-turn-profile-${process.pid}`);
mkdirSync(profDir, { recursive: true });
const tp = await startTestPlatform({
  env: { TALON_LOG_LEVEL: 'warn', GATEWAY_RATE_LIMIT_TOKEN_PER_MIN: '1000000', GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN: '1000000' },
  nodeArgs: values['no-prof'] ? [] : ['--cpu-prof', '--cpu-prof-dir', profDir],
  ...(values.statements ? { pgliteArgs: ['--profile-statements'] } : {}),
});
const token = await tp.token('bench');
const agent = new Agent({ connections: 2 });
const turn = (i: number): Promise<number> => benchTurn(tp.gatewayUrl, token, i, agent);
for (let i = 0; i < 50; i++) await turn(i);
// The embedded database runs without TALON_HOME in its environment; its data directory names it.
const pglitePids = pidsWhere((cmd) => cmd.includes('pglite-server') && cmd.includes(tp.home));
const procs = [...platformPids(tp.home), ...pglitePids].map((pid) => {
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  const name =
    /services\/(\w+)\//.exec(cmd)?.[1] ??
    (cmd.includes('nats-server') ? 'nats-server' : cmd.includes('pglite-server') ? 'pglite' : cmd.slice(0, 60));
  return { pid, name, cpu0: cpuSeconds([pid]), sys0: cpuSeconds([pid], 'kernel') };
});
// --strace: system calls per turn, per process (strace -c attached for the measured turns only).
const traces = values.strace
  ? procs.map((p) => {
      const out = join(profDir, `strace-${p.name}-${p.pid}.txt`);
      return { ...p, out, child: spawn('strace', ['-c', '-f', '-o', out, '-p', String(p.pid)], { stdio: 'ignore' }) };
    })
  : [];
if (traces.length > 0) await new Promise((r) => setTimeout(r, 1000));
// --statements: each SIGUSR2 makes the database print (and restart) its statement table.
const pgliteLog = join(tp.home, 'logs', 'pglite.log');
async function statementTable(nth: number): Promise<StatementRow[]> {
  process.kill(pglitePids[0]!, 'SIGUSR2');
  return waitFor(
    () => {
      const lines = readFileSync(pgliteLog, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"pglite statements"'));
      return lines.length >= nth ? (JSON.parse(lines[nth - 1]!) as { statements: StatementRow[] }).statements : undefined;
    },
    30_000,
    'the statement table in pglite.log',
  );
}
if (values.statements) await statementTable(1);
const lat: number[] = [];
for (let i = 0; i < TURNS; i++) lat.push(await turn(1000 + i));
const s = summarize(lat);
console.log(`${TURNS} sequential turns: p50 ${fmt(s.p50)} ms, p99 ${fmt(s.p99)} ms (database=${tp.database})`);
console.log('CPU ms per turn, by process:');
for (const p of procs) {
  const ms = (s0: number, s1: number) => fmt(((s1 - s0) * 1000) / TURNS);
  console.log(
    `  ${p.name.padEnd(16)} ${ms(p.cpu0, cpuSeconds([p.pid]))} (of it in the kernel ${ms(p.sys0, cpuSeconds([p.pid], 'kernel'))})`,
  );
}
if (values.statements) {
  console.log(`PGlite per turn, by statement (${TURNS} turns):`);
  for (const line of formatStatementRows(await statementTable(2), TURNS)) console.log(`  ${line}`);
}
for (const t of traces) {
  t.child.kill('SIGINT');
  await once(t.child, 'exit');
  console.log(`system calls per turn, ${t.name}:`);
  for (const line of readFileSync(t.out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
    if (m && Number(m[2]) >= TURNS / 2)
      console.log(`  ${m[3]!.padEnd(16)} ${fmt(Number(m[2]) / TURNS, 1)} calls, ${fmt((Number(m[1]) * 1000) / TURNS, 3)} ms`);
  }
}
await agent.close();
await tp.stop();
if (!values['no-prof']) console.log(`profiles in ${profDir}`);
