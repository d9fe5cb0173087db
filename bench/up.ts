// `talon up` cold start to all-healthy (fresh TALON_HOME: CA, certificates,
// database initialisation), warm restart (existing TALON_HOME), ordered stop,
// and idle RSS of every process of the platform.
//   npm run bench:up
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';
import { fmt, machine, rssMiB, table } from './lib.ts';

const home = mkdtempSync(join(tmpdir(), 'talon-bench-up-'));
// Port 0 everywhere: each process binds a free port and `talon up` hands it on.
const env: Record<string, string> = {
  ...(process.env as Record<string, string>),
  TALON_HOME: home,
  TALON_GATEWAY_PORT: '0',
  TALON_NATS_PORT: '0',
  TALON_PGLITE_PORT: '0',
  EGRESS_PROXY_PORT: '0',
  TALON_LLM_API_KEY_SECRET: 'none',
  ...Object.fromEntries(SERVICES.map((s) => [`${s.toUpperCase()}_GRPC_PORT`, '0'])),
};

async function up(): Promise<{ child: ChildProcess; ms: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(REPO_ROOT, 'packages/cli/src/bin.ts'), 'up'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Talon is up')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`talon up exited ${code}: ${out}${err}`)));
  });
  return { child, ms: performance.now() - t0 };
}

async function down(child: ChildProcess): Promise<number> {
  const t0 = performance.now();
  child.kill('SIGINT');
  await new Promise((r) => child.once('exit', r));
  return performance.now() - t0;
}

function descendants(pid: number): Array<{ pid: number; name: string }> {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  const rows = out
    .trim()
    .split('\n')
    .map((l) => {
      const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l)!;
      return { pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! };
    });
  const kids = rows.filter((r) => r.ppid === pid);
  return kids.flatMap((k) => {
    const svc = SERVICES.find((s) => k.args.includes(`services/${s}/src/main.ts`));
    const name =
      svc ?? (k.args.includes('nats-server') ? 'nats-server' : k.args.includes('pglite-server') ? 'pglite (embedded PostgreSQL)' : k.args);
    // The sandbox's plugin hosts are its own children: count them with it.
    const hosts = rows.filter((r) => r.ppid === k.pid).map((g) => ({ pid: g.pid, name: `${name}: plugin host` }));
    return [{ pid: k.pid, name }, ...hosts];
  });
}

console.log(`bench:up on ${machine()}`);
const cold = await up();
console.log(`cold start (fresh TALON_HOME) to all healthy: ${fmt(cold.ms / 1000)} s`);
await sleep(10_000);
const procs = descendants(cold.child.pid!);
const rows = procs.map((p) => [p.name, p.pid, fmt(rssMiB(p.pid), 1)] as const);
const total = procs.reduce((a, p) => a + (rssMiB(p.pid) || 0), 0);
const supervisor = rssMiB(cold.child.pid!);
console.log(
  `\nidle RSS after 10 s (MiB):\n${table(['process', 'pid', 'RSS MiB'], [...rows, ['talon up (supervisor)', cold.child.pid!, fmt(supervisor, 1)], ['TOTAL', '', fmt(total + supervisor, 1)]])}`,
);
const stop1 = await down(cold.child);
console.log(`\nordered stop: ${fmt(stop1 / 1000)} s`);
const warm: number[] = [];
for (let i = 0; i < 3; i++) {
  const w = await up();
  warm.push(w.ms);
  await down(w.child);
}
console.log(`warm restart (existing TALON_HOME) to all healthy: ${warm.map((m) => fmt(m / 1000)).join(' s, ')} s`);
rmSync(home, { recursive: true, force: true });
