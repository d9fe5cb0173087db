// `talon up` start to all-healthy: the first after installing (fresh TALON_HOME, an empty
// compile cache, no database template), a cold start (fresh TALON_HOME: CA, certificates,
// a new database; the compile cache and template the first start left), warm restarts
// (existing TALON_HOME; median of three), ordered stop, and RSS of every process of the platform: idle after the cold start,
// idle after a warm start, and idle again after 1000 turns (RSS growth).
//   npm run bench:up [-- --turns 1000 --database embedded|native]
// native: a fresh database on TALON_TEST_DATABASE_URL's server (the server's own memory is
// not Talon's and is not counted).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { benchArgs } from './args.ts';
import { SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';
import { createNativeDatabase, startFakeLlm } from '@talon/testkit';
import { fmt, machine, pssMiB, rssMiB, summarize, table } from './lib.ts';

const { values } = benchArgs({
  options: { turns: { type: 'string', default: '1000' }, database: { type: 'string', default: 'embedded' } },
});
const TURNS = Number(values.turns);
if (values.database !== 'embedded' && values.database !== 'native') throw new Error('--database is embedded or native');
const native = values.database === 'native' ? await createNativeDatabase() : undefined;
// The model the turns go to: a fake on loopback (the bench measures Talon, not a provider).
const llm = await startFakeLlm();

const home = mkdtempSync(join(tmpdir(), 'talon-bench-up-'));
const compileCache = mkdtempSync(join(tmpdir(), 'talon-bench-up-cc-'));
const pgdataTemplate = mkdtempSync(join(tmpdir(), 'talon-bench-up-pgt-'));
// Port 0 everywhere: each process binds a free port and `talon up` hands it on.
const env: Record<string, string> = {
  ...(process.env as Record<string, string>),
  TALON_HOME: home,
  NODE_COMPILE_CACHE: compileCache,
  TALON_PGLITE_TEMPLATE_DIR: pgdataTemplate,
  TALON_GATEWAY_PORT: '0',
  TALON_NATS_PORT: '0',
  TALON_PGLITE_PORT: '0',
  EGRESS_PROXY_PORT: '0',
  TALON_LLM_API_KEY_SECRET: 'none',
  TALON_LLM_BASE_URL: llm.url,
  TALON_LLM_MODEL: 'fake-model',
  TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${llm.port}`,
  TALON_LOG_LEVEL: 'warn',
  GATEWAY_RATE_LIMIT_TOKEN_PER_MIN: '1000000',
  GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN: '1000000',
  ...(native ? { TALON_DATABASE_URL: native.url } : {}),
  ...Object.fromEntries(SERVICES.map((s) => [`${s.toUpperCase()}_GRPC_PORT`, '0'])),
};

/** The gateway's port from `talon up`'s output (it binds 0 here). */
function gatewayPort(out: string): string {
  const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
  if (!m) throw new Error(`no gateway address in talon up's output:\n${out}`);
  return m[1]!;
}

async function up(over: Record<string, string> = {}): Promise<{ child: ChildProcess; ms: number; out: string }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(REPO_ROOT, 'packages/cli/bin/talon.mjs'), 'up'], {
    env: { ...env, ...over },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Talon is up') && /Gateway\s+http/.test(out)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`talon up exited ${code}: ${out}${err}`)));
  });
  return { child, ms: performance.now() - t0, out };
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

/** RSS (or with `pss`, PSS) in MiB of every process of the platform started by `child`, the supervisor included. */
function rssTable(child: ChildProcess, pss = false): Map<string, number> {
  const of = pss ? pssMiB : rssMiB;
  const out = new Map<string, number>();
  for (const p of descendants(child.pid!)) out.set(`${p.name} (${p.pid})`, of(p.pid) || 0);
  out.set('talon up (supervisor)', of(child.pid!) || 0);
  return out;
}
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/**
 * RSS, the figure the targets name, beside PSS: RSS counts pages shared between processes (the
 * Node binary's text, ≈35 MiB) once per process, PSS splits them, so its total is what the
 * platform takes from the machine.
 */
function printRss(title: string, m: Map<string, number>, pss: Map<string, number>): void {
  const rows = [...m].map(([name, mib]) => [name, fmt(mib, 1), fmt(pss.get(name) ?? Number.NaN, 1)] as const);
  console.log(`\n${title}:\n${table(['process', 'RSS MiB', 'PSS MiB'], [...rows, ['TOTAL', fmt(sum(m), 1), fmt(sum(pss), 1)]])}`);
}

/** Runs `n` chat turns through the gateway, 8 at a time; resolves to their count per second. */
async function turns(n: number, gatewayPort: string): Promise<number> {
  const cli = (...args: string[]) =>
    execFileSync(process.execPath, [join(REPO_ROOT, 'packages/cli/src/bin.ts'), ...args], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const token = cli('token', 'create', '--name', `bench-${Date.now()}`).trim();
  const gateway = `http://127.0.0.1:${gatewayPort}`;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < n) {
        const i = next++;
        const res = await fetch(`${gateway}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-talon-conversation': `bench-${i % 32}` },
          body: JSON.stringify({ messages: [{ role: 'user', content: `turn ${i}: how much memory does this take?` }] }),
        });
        const text = await res.text();
        if (res.status !== 200) throw new Error(`turn ${i}: HTTP ${res.status} ${text}`);
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

console.log(
  `bench:up on ${machine()}; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} at the start`,
);
// The very first start after installing: a fresh TALON_HOME, nothing compiled yet and no
// database template. The run has a compile cache and a template directory of its own, empty
// until this start fills them, as the installation's are after `npm ci`; every later start
// shares them, as `talon up` does.
const firstHome = mkdtempSync(join(tmpdir(), 'talon-bench-up-first-'));
const first = await up({ TALON_HOME: firstHome });
console.log(
  `first start after installing (fresh TALON_HOME, empty compile cache, no database template) to all healthy: ${fmt(first.ms / 1000)} s`,
);
await down(first.child);
const cold = await up();
console.log(`cold start (fresh TALON_HOME) to all healthy: ${fmt(cold.ms / 1000)} s`);
await sleep(10_000);
printRss('idle RSS 10 s after the cold start (MiB)', rssTable(cold.child), rssTable(cold.child, true));
const stop1 = await down(cold.child);
console.log(`\nordered stop: ${fmt(stop1 / 1000)} s`);
const warm: number[] = [];
for (let i = 0; i < 3; i++) {
  const w = await up();
  warm.push(w.ms);
  await down(w.child);
}
console.log(
  `warm restart (existing TALON_HOME) to all healthy: ${warm.map((m) => fmt(m / 1000)).join(' s, ')} s; median ${fmt(summarize(warm).p50 / 1000)} s`,
);

// The platform as it runs after a restart: idle, then after TURNS turns, idle again.
const running = await up();
await sleep(10_000);
const idle = rssTable(running.child);
printRss('idle RSS 10 s after a warm start (MiB)', idle, rssTable(running.child, true));
// A tenth of the turns first: what they add is warm-up (pools, JIT code, caches), what the
// rest add is growth that keeps going.
const port = gatewayPort(running.out);
const warmTurns = Math.round(TURNS / 10);
await turns(warmTurns, port);
await sleep(10_000);
const warmed = rssTable(running.child);
const rate = await turns(TURNS - warmTurns, port);
await sleep(10_000);
const after = rssTable(running.child);
console.log(`\n${TURNS} turns at 8 concurrent (the last ${TURNS - warmTurns}: ${fmt(rate, 0)} turns/s)`);
const growth = (from: number, to: number) => fmt(((to - from) / from) * 100, 1);
console.log(
  `\nRSS idle 10 s after a warm start, after ${warmTurns} turns and after ${TURNS} turns (MiB):\n${table(
    ['process', 'idle', `after ${warmTurns}`, `after ${TURNS}`, `growth idle→${TURNS} %`, `growth ${warmTurns}→${TURNS} %`],
    [
      ...[...idle].map(([name, mib]) => {
        const w = warmed.get(name) ?? Number.NaN;
        const a = after.get(name) ?? Number.NaN;
        return [name, fmt(mib, 1), fmt(w, 1), fmt(a, 1), growth(mib, a), growth(w, a)];
      }),
      ['TOTAL', fmt(sum(idle), 1), fmt(sum(warmed), 1), fmt(sum(after), 1), growth(sum(idle), sum(after)), growth(sum(warmed), sum(after))],
    ],
  )}`,
);
console.log(
  "targets: idle RSS under 700 MiB (embedded database), under 550 MiB for Talon's processes (native); RSS growth over 1000 turns under 10 %",
);
await down(running.child);
await llm.close();
await native?.drop();
rmSync(home, { recursive: true, force: true });
for (const d of [firstHome, compileCache, pgdataTemplate]) rmSync(d, { recursive: true, force: true });
