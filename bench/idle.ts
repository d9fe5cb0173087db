// Idle CPU of the whole platform: every service, nats-server and the embedded database,
// settled (egress caught up with the unsealed vault, no new log line for a while), then
// left alone for 60 s. CPU time is utime + stime from /proc/<pid>/stat (children the
// process started included, e.g. the sandbox's plugin hosts). Target: under 0.5 % of
// one core for everything together (docs/architecture.md, "Vault and egress").
//   npm run bench:idle [-- --seconds 60 --database embedded|native]
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { benchArgs } from './args.ts';
import { SERVICES } from '@talon/kit/service';
import { startTestPlatform, waitFor, type TestDatabaseKind } from '@talon/testkit';
import { fmt, machine, table } from './lib.ts';

const TARGET_PERCENT = 0.5;

const { values } = benchArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    database: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const database = values.database as TestDatabaseKind | undefined;
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** [ppid, utime + stime in ticks] of a process, undefined once it is gone. */
function stat(pid: number): { ppid: number; ticks: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after its closing one.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

/** CPU ticks of `root` and every descendant alive now, per pid. */
function treeTicks(root: number): Map<number, number> {
  const all = new Map<number, { ppid: number; ticks: number }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(Number(d));
    if (s) all.set(Number(d), s);
  }
  const out = new Map<number, number>();
  const walk = (pid: number) => {
    const s = all.get(pid);
    if (!s) return;
    out.set(pid, s.ticks);
    for (const [child, c] of all) if (c.ppid === pid) walk(child);
  };
  walk(root);
  return out;
}

/** Ticks spent between two samples, by processes present in both (a process that came and went is missed). */
function spent(a: Map<number, number>, b: Map<number, number>): number {
  let t = 0;
  for (const [pid, ticks] of b) if (a.has(pid)) t += ticks - a.get(pid)!;
  return t;
}

const tp = await startTestPlatform({
  llm: false,
  ...(database ? { database } : {}),
  env: { TALON_VAULT_PASSPHRASE: `bench-idle-passphrase-${process.pid}` },
});
try {
  await tp.egressCaughtUpWithVault();
  // Settled: no log file grew for 3 s (start-up lines, first connections, the scan index).
  const logs = () => ['pglite', 'nats', ...SERVICES].map((n) => tp.log(n).length).join(',');
  let last = logs();
  let since = Date.now();
  await waitFor(
    () => {
      const now = logs();
      if (now !== last) {
        last = now;
        since = Date.now();
      }
      return Date.now() - since >= 3000;
    },
    120_000,
    'the platform to settle',
  );

  const names = [...SERVICES, 'nats', ...(tp.platform.embedded ? ['pglite'] : [])];
  const pids = names.map((n) => {
    const pid = tp.platform.process(n)?.pid;
    if (!pid) throw new Error(`no process for ${n}`);
    return { name: n, pid };
  });
  const load0 = loadavg();
  const before = pids.map((p) => treeTicks(p.pid));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const wallS = (performance.now() - t0) / 1000;
  const after = pids.map((p) => treeTicks(p.pid));
  const load1 = loadavg();

  const percent = (ticks: number) => (100 * ticks) / ticksPerSecond / wallS;
  const rows = pids.map((p, i) => {
    const t = spent(before[i]!, after[i]!);
    return { name: p.name, pid: p.pid, procs: after[i]!.size, ticks: t, pct: percent(t) };
  });
  const total = rows.reduce((a, r) => a + r.ticks, 0);
  console.log(`bench:idle — ${machine()}, database ${tp.database}, ${fmt(wallS, 1)} s idle, CLK_TCK ${ticksPerSecond}`);
  console.log(
    table(
      ['process', 'pid', 'procs', 'cpu ms', '% of one core'],
      rows.map((r) => [r.name, r.pid, r.procs, fmt((1000 * r.ticks) / ticksPerSecond, 0), fmt(r.pct, 3)]),
    ),
  );
  const totalPct = percent(total);
  console.log(
    `\ntotal: ${fmt(totalPct, 3)} % of one core (target < ${TARGET_PERCENT} %): ${totalPct < TARGET_PERCENT ? 'met' : 'NOT met'}`,
  );
  console.log(
    `load average: ${load0.map((l) => fmt(l)).join(' ')} at the start, ${load1.map((l) => fmt(l)).join(' ')} at the end (other work on the machine counts in it, not in the table)`,
  );
  process.exitCode = totalPct < TARGET_PERCENT ? 0 : 1;
} finally {
  await tp.stop();
}
