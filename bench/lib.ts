// Small helpers shared by the benchmark scripts: percentiles, tables, machine facts.
import { cpus, totalmem } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { request, type Dispatcher } from 'undici';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export function summarize(samples: readonly number[]): { n: number; p50: number; p90: number; p99: number; mean: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), mean, max: s.at(-1) ?? NaN };
}

export function fmt(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: ReadonlyArray<string | number>) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function machine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

/** Resident set size of a process in MiB (Linux /proc). */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** PSS of a process in MiB (shared pages split between the processes that map them; NaN when gone). */
export function pssMiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * The processes whose command line (arguments joined by NUL) and environment (read only
 * when asked for) satisfy `match` (Linux /proc).
 */
export function pidsWhere(match: (cmdline: string, environ: () => string) => boolean): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return match(readFileSync(`/proc/${d}/cmdline`, 'utf8'), () => readFileSync(`/proc/${d}/environ`, 'utf8'));
      } catch {
        return false;
      }
    })
    .map(Number);
}

/**
 * The processes of the platform living in TALON_HOME=`home` (its environment says so),
 * optionally only those whose command line contains `cmd` (Linux /proc).
 */
export function platformPids(home: string, cmd = ''): number[] {
  const mark = `TALON_HOME=${home}`;
  return pidsWhere((cmdline, environ) => cmdline.includes(cmd) && environ().split('\0').includes(mark));
}

/** CPU seconds the processes have used so far (user + system, or `kernel`: system only); a process gone counts 0. */
export function cpuSeconds(pids: readonly number[], part: 'all' | 'kernel' = 'all'): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += (part === 'all' ? Number(f[11]) : 0) + Number(f[12]);
    } catch {
      // exited
    }
  }
  return ticks / 100;
}

/**
 * One chat turn through the gateway as the turn benchmarks send it (conversation `bench-<i mod 64>`,
 * the fake LLM answering at once); its latency in ms. A status other than 200 throws.
 */
export async function benchTurn(gatewayUrl: string, token: string, i: number, dispatcher: Dispatcher): Promise<number> {
  const t0 = performance.now();
  const res = await request(`${gatewayUrl}/v1/chat/completions`, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-talon-conversation': `bench-${i % 64}` },
    body: JSON.stringify({ messages: [{ role: 'user', content: `turn ${i}: how fast is the pipeline?` }] }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`turn ${i}: HTTP ${res.statusCode} ${text}`);
  return performance.now() - t0;
}
