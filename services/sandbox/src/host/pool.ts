// The plugin host pool of one sandbox node: up to `size` child processes, each running
// one plugin call at a time. Hosts are started when a call finds none free and stopped
// after `idleMs` without work (each costs ~80 MiB resident), so an idle node runs none
// unless `minIdle` keeps some warm. The pool enforces what a plugin cannot be trusted
// to respect: the wall-clock deadline (SIGKILL; a fresh host when work needs one), a
// resident memory ceiling per host, a per-skill share of the hosts (one slow skill
// cannot take them all) and a bounded queue (excess work is refused, not buffered forever).
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@talon/kit/log';
import type { FromChild, RunLimits, ToChild } from './protocol.ts';

export interface HostCallAnswer {
  result?: string;
  fatal?: { code: string; message: string };
}

export interface HostJob {
  /** name@version: the unit of the per-skill share. */
  skillKey: string;
  sha256: string;
  wasm: Uint8Array;
  entrypoint: string;
  input: string;
  inputSchema: string;
  maxPages: number;
  limits: RunLimits;
  /** Epoch ms by which the call must be finished (queue time included). */
  deadline: number;
  /** Most time (ms) the call may run once a host takes it, within `deadline`; absent: up to `deadline`. */
  runMs?: number;
  onHostCall: (fn: string, payload: string, signal: AbortSignal) => Promise<HostCallAnswer>;
}

export interface HostOutcome {
  ok: boolean;
  output?: Uint8Array;
  error?: { code: string; message: string };
  logs: string[];
  queuedMs: number;
  /** Time spent inside the plugin host (instantiate + call), microseconds. */
  childUs?: number;
  /** True when the host running the call was killed (timeout, memory) and replaced. */
  hostReplaced: boolean;
}

export interface PoolOptions {
  size: number;
  /** Most hosts one skill may occupy at once. */
  perSkill: number;
  /** Most calls waiting for a host; beyond it calls are refused with `busy`. */
  queueLimit: number;
  /** V8 heap cap of a host (MiB). */
  heapMb: number;
  /** Resident memory (bytes) above which a host is killed. */
  rssLimitBytes: number;
  /** Time a host may take to prepare its next instance after a call. */
  warmTimeoutMs: number;
  /** A host idle this long (ms) is stopped; 0 or absent: never. */
  idleMs?: number;
  /** Hosts kept started while the node is idle (started by `start()`, never retired); default 0. */
  minIdle?: number;
  log: Logger;
}

type HostState = 'starting' | 'idle' | 'busy' | 'warming' | 'dead';

interface Active {
  id: number;
  job: HostJob;
  resolve: (o: HostOutcome) => void;
  queuedMs: number;
  timer: NodeJS.Timeout;
  abort: AbortController;
}

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const SANDBOX_ROOT = resolve(dirname(CHILD), '..', '..');

/** Directories a plugin host may read: its own code and Extism. Nothing else (no TALON_HOME, no keys). */
function readablePaths(): string[] {
  const extismEntry = fileURLToPath(import.meta.resolve('@extism/extism'));
  const extismDir = extismEntry.slice(0, extismEntry.lastIndexOf('/dist/') + 1);
  // The input-schema validator is the skill package format's (@talon/records/skills/schema):
  // the host may read that one folder (pure validation code) and the package manifest that
  // resolves it, under its node_modules link and its real path — nothing else of the repository.
  const schema = fileURLToPath(import.meta.resolve('@talon/records/skills/schema'));
  const recordsRoot = resolve(dirname(schema), '..', '..', '..');
  const recordsLink = resolve(SANDBOX_ROOT, '..', '..', 'node_modules', '@talon', 'records');
  return [
    resolve(SANDBOX_ROOT, 'src'),
    resolve(SANDBOX_ROOT, 'package.json'),
    extismDir,
    dirname(schema),
    resolve(recordsRoot, 'package.json'),
    recordsLink,
    resolve(recordsLink, 'package.json'),
  ];
}

/**
 * util-linux setpriv, when present, starts each host with a parent-death signal (the
 * kernel kills it if the node dies, however it dies), no_new_privs, and — when the node
 * runs as root — an unprivileged uid with no capabilities. Without it the host runs a
 * watchdog thread instead (see orphan-watchdog.ts).
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv'].find((p) => existsSync(p));
const NOBODY = 65534;

function launcher(): { execPath: string; prefix: string[]; watchdog: boolean } {
  if (!SETPRIV || process.platform !== 'linux') return { execPath: process.execPath, prefix: [], watchdog: true };
  const drop =
    process.geteuid?.() === 0 ? [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'] : [];
  return { execPath: SETPRIV, prefix: ['--pdeathsig', 'KILL', '--no-new-privs', ...drop, '--', process.execPath], watchdog: false };
}

function residentBytes(pid: number): number | undefined {
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return Number.isFinite(pages) ? pages * 4096 : undefined;
  } catch {
    return undefined;
  }
}

class PluginHost {
  readonly child: ChildProcess;
  state: HostState = 'starting';
  active: Active | undefined;
  /** Modules this host has compiled (advisory: the child asks again if it evicted one). */
  readonly warm = new Set<string>();
  /** Why the pool killed it ('idle': retired after idleMs without work, not a failure). */
  killReason: 'timeout' | 'memory' | 'warm_timeout' | 'idle' | 'shutdown' | undefined;
  /** Module the host is preparing a fresh instance of (state "warming"). */
  warmingSha: string | undefined;
  /** When the host last finished a call: the most recent one has the hottest caches. */
  lastUsed = 0;
  /** The last call the host finished; only its `idle` counts (earlier ones are stale). */
  lastDoneId = 0;
  warmTimer: NodeJS.Timeout | undefined;
  /** Runs only while the host is idle (unref'd): retires it after idleMs. */
  idleTimer: NodeJS.Timeout | undefined;
  stderrTail = '';
  readonly ready: Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;

  constructor(heapMb: number) {
    const how = launcher();
    this.child = fork(CHILD, how.watchdog ? ['--watchdog'] : [], {
      execPath: how.execPath,
      execArgv: [
        ...how.prefix,
        '--permission',
        ...readablePaths().map((p) => `--allow-fs-read=${p}`),
        '--allow-worker',
        `--max-old-space-size=${heapMb}`,
        '--max-semi-space-size=2',
        '--disallow-code-generation-from-strings',
        '--no-warnings',
      ],
      env: {},
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-2000);
    });
    this.ready = new Promise((resolveReady, reject) => {
      const onMsg = (m: FromChild) => {
        if (m.t === 'ready') {
          this.child.off('message', onMsg);
          resolveReady();
        }
      };
      this.child.on('message', onMsg);
      this.child.once('exit', () => reject(new Error(`plugin host exited during start: ${this.stderrTail.slice(-300)}`)));
    });
    this.exited = new Promise((r) => this.child.once('exit', (code, signal) => r({ code, signal })));
    this.ready.catch(() => undefined);
  }

  send(m: ToChild): void {
    if (this.child.connected) this.child.send(m);
  }

  kill(reason: NonNullable<PluginHost['killReason']>): void {
    this.killReason ??= reason;
    this.child.kill('SIGKILL');
  }
}

export class PoolBusy extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoolBusy';
  }
}

export class HostPool {
  private readonly opts: PoolOptions;
  private readonly hosts = new Set<PluginHost>();
  private readonly queue: Array<{ job: HostJob; resolve: (o: HostOutcome) => void; enqueuedAt: number; timer: NodeJS.Timeout }> = [];
  private readonly running = new Map<string, number>();
  private nextId = 1;
  private closed = false;
  private rssTimer: NodeJS.Timeout | undefined;
  private consecutiveStartFailures = 0;
  /** After failed starts: no host is started before this (epoch ms). */
  private nextStartAt = 0;
  /** Set only while work waits out that backoff. */
  private startTimer: NodeJS.Timeout | undefined;
  private readonly minIdle: number;
  /** Counters for metrics and tests (`retired`: stopped after idleMs, not a failure). */
  readonly counters = { started: 0, retired: 0, killed: 0, crashed: 0, completed: 0, refusedBusy: 0 };

  constructor(opts: PoolOptions) {
    this.opts = opts;
    this.minIdle = Math.min(opts.size, Math.max(0, opts.minIdle ?? 0));
  }

  /** Starts the `minIdle` warm hosts and waits for them; with none (the default) it returns at once. */
  async start(): Promise<void> {
    this.dispatch();
    await Promise.all([...this.hosts].map((h) => h.ready));
  }

  /** Watches hosts' memory while one loads or runs a plugin; an idle node has no timer (a quiet idle). */
  private watchMemory(): void {
    if (this.rssTimer || this.closed) return;
    this.rssTimer = setInterval(() => this.checkMemory(), 100);
    this.rssTimer.unref();
  }

  get size(): number {
    return this.hosts.size;
  }

  /** PIDs of the live hosts (tests check they share the node's network namespace). */
  pids(): number[] {
    return [...this.hosts].map((h) => h.child.pid).filter((p): p is number => p !== undefined);
  }

  queued(): number {
    return this.queue.length;
  }

  /** Hosts started and waiting for work (tests wait for this instead of sleeping). */
  idleHosts(): number {
    let n = 0;
    for (const h of this.hosts) if (h.state === 'idle') n += 1;
    return n;
  }

  run(job: HostJob): Promise<HostOutcome> {
    if (this.closed) return Promise.resolve(this.failure('unavailable', 'the sandbox node is shutting down', 0));
    return new Promise((resolveRun) => {
      const enqueuedAt = Date.now();
      const entry = {
        job,
        resolve: resolveRun,
        enqueuedAt,
        timer: setTimeout(
          () => {
            const i = this.queue.indexOf(entry);
            if (i >= 0) this.queue.splice(i, 1);
            resolveRun(this.failure('timeout', 'the deadline passed before a plugin host became free', Date.now() - enqueuedAt));
          },
          Math.max(0, job.deadline - enqueuedAt),
        ),
      };
      this.queue.push(entry);
      this.dispatch();
      // A call waiting for a host started for it is not queued beyond capacity: only the
      // rest counts against the limit (a cold node takes the same burst as a warm one).
      if (this.queue.includes(entry) && this.queue.length > this.opts.queueLimit + this.count('starting')) {
        this.queue.splice(this.queue.indexOf(entry), 1);
        clearTimeout(entry.timer);
        this.counters.refusedBusy += 1;
        resolveRun(
          this.failure(
            'busy',
            `this sandbox node is at capacity (${this.opts.size} hosts, ${this.queue.length} queued); retry or add sandbox nodes`,
            0,
          ),
        );
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.rssTimer) clearInterval(this.rssTimer);
    if (this.startTimer) clearTimeout(this.startTimer);
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      q.resolve(this.failure('unavailable', 'the sandbox node is shutting down', Date.now() - q.enqueuedAt));
    }
    const all = [...this.hosts];
    for (const h of all) h.kill('shutdown');
    await Promise.all(all.map((h) => h.exited));
  }

  private failure(code: string, message: string, queuedMs: number): HostOutcome {
    return { ok: false, error: { code, message }, logs: [], queuedMs, hostReplaced: false };
  }

  private count(state: HostState): number {
    let n = 0;
    for (const h of this.hosts) if (h.state === state) n += 1;
    return n;
  }

  private spawn(): PluginHost {
    const h = new PluginHost(this.opts.heapMb);
    this.counters.started += 1;
    this.hosts.add(h);
    h.child.on('message', (m: FromChild) => this.onMessage(h, m));
    h.ready.then(
      () => {
        this.consecutiveStartFailures = 0;
        this.nextStartAt = 0;
        if (h.state === 'starting') this.becomeIdle(h);
        this.dispatch();
      },
      () => undefined,
    );
    void h.exited.then((info) => this.onExit(h, info));
    return h;
  }

  /** A host with nothing to do: it is retired after idleMs unless work comes first (assign clears the timer). */
  private becomeIdle(h: PluginHost): void {
    h.state = 'idle';
    const idleMs = this.opts.idleMs ?? 0;
    if (idleMs <= 0 || this.closed) return;
    if (h.idleTimer) clearTimeout(h.idleTimer);
    h.idleTimer = setTimeout(() => {
      h.idleTimer = undefined;
      if (h.state !== 'idle' || this.closed) return;
      // The warm minimum stays; it needs no timer (a quiet idle), so none is set again.
      let live = 0;
      for (const o of this.hosts) if (o.killReason === undefined) live += 1;
      if (live <= this.minIdle) return;
      h.state = 'dead';
      h.kill('idle');
    }, idleMs);
    h.idleTimer.unref();
  }

  private onExit(h: PluginHost, info: { code: number | null; signal: string | null }): void {
    const wasStarting = h.state === 'starting';
    h.state = 'dead';
    if (h.warmTimer) clearTimeout(h.warmTimer);
    if (h.idleTimer) clearTimeout(h.idleTimer);
    this.hosts.delete(h);
    if (h.killReason === 'idle') this.counters.retired += 1;
    else if (h.killReason && h.killReason !== 'shutdown') this.counters.killed += 1;
    else if (!this.closed) this.counters.crashed += 1;
    const a = h.active;
    if (a) {
      h.active = undefined;
      const oom = /heap out of memory|Reached heap limit|allocation failed/i.test(h.stderrTail);
      const error =
        h.killReason === 'memory' || oom
          ? { code: 'memory_limit', message: `the plugin host exceeded its memory ceiling and was replaced` }
          : { code: 'internal', message: `the plugin host exited unexpectedly (${info.signal ?? `code ${info.code}`}) and was replaced` };
      this.finish(a, { ok: false, error, logs: [], queuedMs: a.queuedMs, hostReplaced: true });
    }
    if (this.closed) return;
    if (h.killReason === undefined) {
      this.opts.log.warn({ code: info.code, signal: info.signal, stderr: h.stderrTail.slice(-500) }, 'plugin host exited unexpectedly');
    }
    if (wasStarting) {
      this.consecutiveStartFailures += 1;
      this.nextStartAt = Date.now() + Math.min(5000, 100 * 2 ** this.consecutiveStartFailures);
    }
    // No eager replacement: dispatch starts one if work waits or the warm minimum needs it.
    this.dispatch();
  }

  private onMessage(h: PluginHost, m: FromChild): void {
    const a = h.active;
    switch (m.t) {
      case 'need-wasm':
        if (a && a.id === m.id) h.send({ t: 'wasm', id: m.id, sha256: a.job.sha256, wasm: a.job.wasm });
        return;
      case 'host-call': {
        if (!a || a.id !== m.id) return;
        a.job.onHostCall(m.fn, m.payload, a.abort.signal).then(
          (ans) => {
            if (h.active === a) h.send({ t: 'host-res', id: m.id, callId: m.callId, ...ans });
          },
          (err: unknown) => {
            if (h.active === a) {
              h.send({
                t: 'host-res',
                id: m.id,
                callId: m.callId,
                fatal: { code: 'internal', message: `host call failed: ${(err as Error).message}` },
              });
            }
          },
        );
        return;
      }
      case 'done': {
        if (!a || a.id !== m.id) return;
        h.active = undefined;
        h.state = 'warming';
        this.watchMemory();
        h.warmingSha = a.job.sha256;
        h.lastUsed = Date.now();
        h.lastDoneId = m.id;
        h.warmTimer = setTimeout(() => h.kill('warm_timeout'), this.opts.warmTimeoutMs);
        h.warmTimer.unref();
        this.finish(a, {
          ok: m.ok,
          output: m.output,
          error: m.error,
          logs: m.logs,
          queuedMs: a.queuedMs,
          childUs: m.elapsedUs,
          hostReplaced: false,
        });
        return;
      }
      case 'idle':
        if (h.state !== 'warming' || m.id !== h.lastDoneId) return;
        if (h.warmTimer) clearTimeout(h.warmTimer);
        h.warmingSha = undefined;
        this.becomeIdle(h);
        this.dispatch();
        return;
      case 'ready':
        return;
    }
  }

  private finish(a: Active, outcome: HostOutcome): void {
    clearTimeout(a.timer);
    a.abort.abort();
    const n = (this.running.get(a.job.skillKey) ?? 1) - 1;
    if (n <= 0) this.running.delete(a.job.skillKey);
    else this.running.set(a.job.skillKey, n);
    this.counters.completed += 1;
    a.resolve(outcome);
    this.dispatch();
  }

  private dispatch(): void {
    if (this.closed) return;
    // Calls that may run now (within their skill's share) but found no free host.
    const unplaced = new Map<string, number>();
    let waiting = 0;
    for (let i = 0; i < this.queue.length;) {
      const q = this.queue[i]!;
      const key = q.job.skillKey;
      if ((this.running.get(key) ?? 0) + (unplaced.get(key) ?? 0) >= this.opts.perSkill) {
        i += 1;
        continue;
      }
      // First in, first served: once one call waits, later ones wait too.
      const host = waiting === 0 ? this.pickHost(q.job.sha256) : undefined;
      if (!host) {
        unplaced.set(key, (unplaced.get(key) ?? 0) + 1);
        waiting += 1;
        i += 1;
        continue;
      }
      this.queue.splice(i, 1);
      clearTimeout(q.timer);
      this.assign(host, q.job, q.resolve, Date.now() - q.enqueuedAt);
    }
    this.grow(waiting);
  }

  /**
   * Starts hosts for calls that wait (beyond those already starting) and up to the warm
   * minimum, never past `size`. A host busy preparing its next instance is not counted
   * as free: a module that loops while instantiating would hold it until warmTimeoutMs.
   * After failed starts, one host at a time once the backoff has passed.
   */
  private grow(waiting: number): void {
    const starting = this.count('starting');
    const want = Math.min(this.opts.size, Math.max(this.minIdle, this.hosts.size + waiting - starting));
    let n = want - this.hosts.size;
    if (n <= 0) return;
    const wait = this.nextStartAt - Date.now();
    if (wait > 0) {
      if (!this.startTimer) {
        this.startTimer = setTimeout(() => {
          this.startTimer = undefined;
          this.dispatch();
        }, wait);
        this.startTimer.unref();
      }
      return;
    }
    if (this.consecutiveStartFailures > 0) n = Math.min(n, 1 - starting);
    for (let i = 0; i < n; i++) this.spawn();
  }

  /**
   * The host that just ran this module and is preparing its next instance (hottest
   * caches; the call queues behind a ~0.1 ms instantiation, and only this skill's own
   * start-up code can delay it), else an idle host that compiled the module (most
   * recently used first), else any idle host.
   */
  private pickHost(sha256: string): PluginHost | undefined {
    let best: PluginHost | undefined;
    let warming: PluginHost | undefined;
    let any: PluginHost | undefined;
    for (const h of this.hosts) {
      if (h.state === 'idle') {
        any ??= h;
        if (h.warm.has(sha256) && (!best || h.lastUsed > best.lastUsed)) best = h;
      } else if (h.state === 'warming' && h.warmingSha === sha256) warming ??= h;
    }
    return warming ?? best ?? any;
  }

  private assign(h: PluginHost, job: HostJob, resolveRun: (o: HostOutcome) => void, queuedMs: number): void {
    const id = this.nextId++;
    this.running.set(job.skillKey, (this.running.get(job.skillKey) ?? 0) + 1);
    const active: Active = {
      id,
      job,
      resolve: resolveRun,
      queuedMs,
      abort: new AbortController(),
      timer: setTimeout(
        () => {
          if (h.active !== active) return;
          h.active = undefined;
          h.kill('timeout');
          this.finish(active, {
            ok: false,
            error: { code: 'timeout', message: `the skill did not finish before its deadline and was stopped` },
            logs: [],
            queuedMs,
            hostReplaced: true,
          });
        },
        Math.max(0, Math.min(job.deadline - Date.now(), job.runMs ?? Infinity)),
      ),
    };
    h.active = active;
    if (h.warmTimer) clearTimeout(h.warmTimer);
    if (h.idleTimer) clearTimeout(h.idleTimer);
    h.idleTimer = undefined;
    h.state = 'busy';
    this.watchMemory();
    const sendWasm = !h.warm.has(job.sha256);
    h.warm.add(job.sha256);
    h.send({
      t: 'run',
      id,
      sha256: job.sha256,
      wasm: sendWasm ? job.wasm : undefined,
      entrypoint: job.entrypoint,
      input: job.input,
      inputSchema: job.inputSchema,
      maxPages: job.maxPages,
      limits: job.limits,
    });
  }

  private checkMemory(): void {
    if (![...this.hosts].some((h) => h.state === 'busy' || h.state === 'warming')) {
      clearInterval(this.rssTimer);
      this.rssTimer = undefined;
      return;
    }
    for (const h of this.hosts) {
      // Only a host loading or running a plugin can grow; an idle node reads nothing (a quiet idle).
      if ((h.state !== 'busy' && h.state !== 'warming') || h.child.pid === undefined) continue;
      const rss = residentBytes(h.child.pid);
      if (rss !== undefined && rss > this.opts.rssLimitBytes) {
        this.opts.log.warn(
          { rss_mb: Math.round(rss / 1048576), skill: h.active?.job.skillKey },
          'plugin host over its memory ceiling; killing it',
        );
        h.kill('memory');
      }
    }
  }
}
