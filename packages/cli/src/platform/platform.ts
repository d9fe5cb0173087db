// Runs the whole platform on one machine: NATS, the database (embedded PGlite or
// an operator's server), and the six services as separate OS processes.
// `talon up` and the test harness both use this; neither duplicates the steps.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkHealth, type TlsMaterial } from '@talon/kit/grpc';
import { connectNats, provisionJetStream } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { DEFAULT_PORTS, EXIT_CONFIG, SERVICES, type ServiceName } from '@talon/kit/service';
import { PEER_PORTS_ENV, PORTS_FILE_ENV, readPortsFile, type BoundPorts, type PeerPort } from '@talon/kit/ports';
import { bootstrapDatabase, redactUrl, type DbOwner } from './database.ts';
import { ensureDir, ensureNkeys, ensurePki, prepareHome, type HomeLayout } from './home.ts';
import { nextRestart } from './supervision.ts';
import { assertHomeUntracked } from './git-guard.ts';
import { findNatsServer, readNatsPortsFile, writeNatsConfig } from './nats-server.ts';
import { ManagedProcess, type ExitInfo } from './process.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..', '..');

/**
 * Where everything listens. 0 means "any free port": the process binds port 0 and
 * reports what it got (TALON_PORTS_FILE, nats-server's ports file), and the platform
 * hands that number to whoever connects to it. Picking a free port here and binding it
 * later in another process is a race a busy machine loses.
 */
export interface PlatformPorts {
  gatewayHttp: number;
  nats: number;
  pglite: number;
  egressProxy: number;
  grpc: Record<ServiceName, number>;
  /** Each service's internal HTTP port (/livez, /readyz). */
  internal: Record<ServiceName, number>;
}

export function defaultPorts(env: Record<string, string | undefined> = process.env): PlatformPorts {
  const n = (k: string, d: number) => (env[k] && /^\d+$/.test(env[k]) ? Number(env[k]) : d);
  return {
    gatewayHttp: n('TALON_GATEWAY_PORT', DEFAULT_PORTS.gatewayHttp),
    nats: n('TALON_NATS_PORT', DEFAULT_PORTS.nats),
    pglite: n('TALON_PGLITE_PORT', DEFAULT_PORTS.pglite),
    egressProxy: n('EGRESS_PROXY_PORT', DEFAULT_PORTS.egressProxy),
    grpc: Object.fromEntries(SERVICES.map((s) => [s, n(`${s.toUpperCase()}_GRPC_PORT`, DEFAULT_PORTS.grpc[s])])) as Record<
      ServiceName,
      number
    >,
    internal: Object.fromEntries(
      SERVICES.map((s) => [s, n(`${s.toUpperCase()}_INTERNAL_PORT`, DEFAULT_PORTS.internal[s])]),
    ) as Record<ServiceName, number>,
  };
}

/** Stops a managed process on purpose (not a crash): SIGKILL with `kill`, else SIGTERM with a grace period. */
async function stopProcess(proc: ManagedProcess, opts: { kill?: boolean; graceMs?: number }): Promise<void> {
  proc.expectedExit = true;
  if (opts.kill) {
    proc.kill('SIGKILL');
    await proc.exited;
  } else await proc.stop(opts.graceMs ?? 10_000);
}

export interface PlatformOptions {
  home: string;
  ports: PlatformPorts;
  /** Operator's PostgreSQL (admin URL). Unset: embedded PGlite under home/pgdata. */
  databaseUrl?: string;
  /** Role name prefix for the database bootstrap (tests isolate with unique prefixes). */
  dbRolePrefix?: string;
  /** Extra environment for every service (TALON_LLM_*, TALON_EGRESS_ALLOW_PRIVATE...). */
  env?: Record<string, string | undefined>;
  /** Environment of the caller (PATH, TALON_NATS_SERVER_BIN...). */
  baseEnv?: Record<string, string | undefined>;
  /** Restart a service that exits unexpectedly (talon up: yes; tests: no). */
  autoRestart?: boolean;
  /** Progress messages for people watching a long start. */
  onProgress?: (msg: string) => void;
  /** Called when a managed process exits unexpectedly. */
  onCrash?: (name: string, info: { code: number | null; signal: string | null }) => void;
  /** Bound on each start step: a report of bound ports, the database, health (default 60 s). */
  healthTimeoutMs?: number;
  /** Extra Node.js flags for service processes (tests: --heapsnapshot-signal). */
  nodeArgs?: readonly string[];
  /** Provision JetStream when NATS starts (default yes; tests of `talon provision` say no). */
  provision?: boolean;
}

/** Platform settings that no service process receives (the passphrase goes to the vault alone). */
const PLATFORM_ONLY_KEYS = new Set([
  'TALON_VAULT_PASSPHRASE',
  'TALON_DATABASE_URL',
  'TALON_TEST_DATABASE',
  'TALON_TEST_DATABASE_URL',
  'TALON_TEST_LOG_LEVEL',
]);

const START_ORDER: readonly ServiceName[] = ['memory', 'vault', 'egress', 'sandbox', 'orchestrator', 'gateway'];
const STOP_ORDER: readonly ServiceName[] = ['gateway', 'orchestrator', 'sandbox', 'egress', 'vault', 'memory'];

function validPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n < 65536;
}

/** False when something already listens on 127.0.0.1:port. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'EADDRINUSE'));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export class Platform {
  readonly opts: PlatformOptions;
  readonly home: HomeLayout;
  /**
   * The ports in use: `opts.ports` with every 0 replaced by the port the process
   * reported. A service that restarts gets the same ports (its dependents have them).
   */
  readonly ports: PlatformPorts;
  /** A running service whose ports report was unusable (waitHealthy fails with it). */
  private readonly reportFailures = new Map<ServiceName, Error>();
  private nats: ManagedProcess | undefined;
  private pglite: ManagedProcess | undefined;
  private readonly procs = new Map<ServiceName, ManagedProcess>();
  private dbUrls: Record<DbOwner, string> | undefined;
  private stopping = false;
  /** Restart attempts since the last healthy run, per process (services, `nats`, `pglite`). */
  private readonly restarts = new Map<string, number>();

  constructor(opts: PlatformOptions) {
    this.opts = opts;
    this.ports = { ...opts.ports, grpc: { ...opts.ports.grpc }, internal: { ...opts.ports.internal } };
    this.home = prepareHome(resolve(opts.home));
    // Children run in their own process groups; never leave them behind if we die.
    process.once('exit', () => this.killAll());
  }

  /** Last resort on exit: SIGKILL whatever is still running. */
  killAll(): void {
    for (const p of [...this.procs.values(), this.pglite, this.nats]) if (p?.running) p.kill('SIGKILL');
  }

  private progress(msg: string): void {
    this.opts.onProgress?.(msg);
  }

  get natsUrl(): string {
    return `nats://127.0.0.1:${this.ports.nats}`;
  }
  get gatewayUrl(): string {
    return `http://127.0.0.1:${this.ports.gatewayHttp}`;
  }
  /** A service's internal HTTP port (/livez, /readyz). */
  internalUrl(s: ServiceName): string {
    return `http://127.0.0.1:${this.ports.internal[s]}`;
  }
  get egressProxyUrl(): string {
    return `https://127.0.0.1:${this.ports.egressProxy}`;
  }
  get embedded(): boolean {
    return !this.opts.databaseUrl;
  }
  get embeddedDatabaseUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.ports.pglite}/postgres`;
  }
  adminDatabaseUrl(): string {
    return this.opts.databaseUrl ?? this.embeddedDatabaseUrl;
  }
  logFile(name: string): string {
    return join(this.home.logs, `${name}.log`);
  }
  /** Where a service reports the ports it bound (TALON_PORTS_FILE). */
  portsFile(s: ServiceName): string {
    return join(this.home.run, `${s}.ports.json`);
  }
  /** mTLS material of an identity (the CLI uses `admin`). */
  tls(identity: string): TlsMaterial {
    return {
      ca: readFileSync(join(this.home.pki, 'ca.crt')),
      cert: readFileSync(join(this.home.pki, `${identity}.crt`)),
      key: readFileSync(join(this.home.pki, `${identity}.key`)),
    };
  }
  /** A managed process: a service, `nats` or `pglite` (tests and chaos signal it to simulate a crash). */
  process(name: ServiceName | 'nats' | 'pglite'): ManagedProcess | undefined {
    return name === 'nats' ? this.nats : name === 'pglite' ? this.pglite : this.procs.get(name);
  }

  async start(services: readonly ServiceName[] = SERVICES): Promise<void> {
    await this.checkSetPortsFree(services);
    assertHomeUntracked(this.home.root);
    await ensurePki(this.home, (what) => this.progress(`created ${what}`));
    await this.startNats();
    await this.startDatabase();
    // All at once: a service that needs a peer's port waits for it inside (serviceEnv).
    // START_ORDER puts peers first, so they are running when their dependents' env is built.
    for (const s of START_ORDER) if (services.includes(s)) this.startService(s);
    await this.waitHealthy(services);
  }

  /**
   * Fails at once, naming each variable, when a port that is set (not 0) is already
   * taken, instead of after the database and the other services have started. Only
   * a courtesy: whatever binds later still fails the same way if it lost the port.
   */
  private async checkSetPortsFree(services: readonly ServiceName[]): Promise<void> {
    const p = this.opts.ports;
    const set: Array<[number, string]> = [[p.nats, 'TALON_NATS_PORT']];
    if (this.embedded) set.push([p.pglite, 'TALON_PGLITE_PORT']);
    if (services.includes('gateway')) set.push([p.gatewayHttp, 'TALON_GATEWAY_PORT']);
    if (services.includes('egress')) set.push([p.egressProxy, 'EGRESS_PROXY_PORT']);
    for (const s of services) set.push([p.grpc[s], `${s.toUpperCase()}_GRPC_PORT`], [p.internal[s], `${s.toUpperCase()}_INTERNAL_PORT`]);
    const taken: string[] = [];
    for (const [port, variable] of set)
      if (port !== 0 && !(await canListen(port))) taken.push(`127.0.0.1:${port} is already in use (${variable})`);
    if (taken.length > 0) throw new Error(`${taken.join('; ')}: stop whatever listens there or set another port (0 picks a free one)`);
  }

  /**
   * Polls `read` until it yields the ports `proc` bound. Fails when the process exits
   * first (naming the port and its variable when it was taken) or after `timeoutMs`.
   */
  private async awaitPorts<T>(
    name: string,
    proc: ManagedProcess,
    read: () => T | undefined,
    inUse?: { port: number; variable: string },
    timeoutMs = this.opts.healthTimeoutMs ?? 60_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = read();
      if (v !== undefined) return v;
      if (!proc.running) throw new Error(await this.startFailure(name, proc, inUse));
      if (Date.now() > deadline) throw new Error(`${name} did not report its ports within ${timeoutMs} ms; see ${this.logFile(name)}`);
      await Promise.race([sleep(25), proc.exited]);
    }
  }

  private logTail(name: string, lines = 15): string {
    const f = this.logFile(name);
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n') : '';
  }

  private async startFailure(name: string, proc: ManagedProcess, inUse?: { port: number; variable: string }): Promise<string> {
    const info = await proc.exited;
    // Its last words may still be on their way to the log (bounded: a grandchild may hold its output open).
    await Promise.race([proc.logged, sleep(5000, undefined, { ref: false })]);
    const tail = this.logTail(name);
    // nats-server and PGlite only say "address in use"; the services name the variable themselves (EX_CONFIG).
    const taken = inUse && inUse.port !== 0 && /EADDRINUSE|address already in use/i.test(tail);
    const head = taken
      ? `${name} could not listen: 127.0.0.1:${inUse.port} is already in use (${inUse.variable}); stop whatever listens there or set ${inUse.variable} to another port (0 picks a free one)`
      : info.code === EXIT_CONFIG
        ? `${name} did not start: invalid configuration`
        : `${name} exited during start (code ${info.code ?? '-'}, signal ${info.signal ?? '-'})`;
    return `${head}; last log lines:\n${tail}`;
  }

  async startNats(): Promise<void> {
    const bin = findNatsServer(this.opts.baseEnv ?? process.env);
    const users = ensureNkeys(this.home);
    // nats-server writes its ports file here once it is ready; old ones are stale.
    const portsDir = ensureDir(join(this.home.run, 'nats'));
    for (const f of readdirSync(portsDir)) rmSync(join(portsDir, f), { force: true });
    // A restart binds the port the first start reported: every service has it.
    const asked = this.ports.nats || this.opts.ports.nats;
    writeNatsConfig({
      file: this.home.natsConfig,
      host: '127.0.0.1',
      port: asked,
      storeDir: this.home.natsStore,
      users,
      portsFileDir: portsDir,
    });
    this.progress(`starting nats-server on 127.0.0.1:${asked || '(any free port)'} (JetStream in ${this.home.natsStore})`);
    const nats = new ManagedProcess({
      name: 'nats',
      command: bin,
      args: ['-c', this.home.natsConfig],
      env: { PATH: process.env.PATH },
      logFile: this.logFile('nats'),
    });
    this.nats = nats;
    // Services reconnect on their own once nats-server is back on the same port, with its JetStream data.
    this.watchCrash(
      'nats',
      nats,
      this.restartOnCrash('nats', () => this.startNats()),
    );
    this.ports.nats = await this.awaitPorts('nats', nats, () => readNatsPortsFile(portsDir, nats.pid ?? -1), {
      port: asked,
      variable: 'TALON_NATS_PORT',
    });
    const log = createLogger({ service: 'talon-up', level: 'silent' });
    const nc = await connectNats({
      servers: this.natsUrl,
      user: 'admin',
      seedFile: join(this.home.nats, 'admin.nk'),
      log,
      connectTimeoutMs: 15_000,
    });
    if (this.opts.provision === false) {
      await nc.drain();
      return;
    }
    try {
      await provisionJetStream(nc);
    } finally {
      await nc.drain();
    }
    this.progress('JetStream streams and buckets provisioned');
  }

  async startDatabase(): Promise<void> {
    if (this.embedded) {
      // A restart binds the port the first start reported: the services' database URLs name it.
      const asked = this.ports.pglite || this.opts.ports.pglite;
      this.progress(
        `starting embedded PostgreSQL (PGlite + pgvector) on 127.0.0.1:${asked || '(any free port)'}, data in ${this.home.pgdata}`,
      );
      const portsFile = join(this.home.run, 'pglite.ports.json');
      rmSync(portsFile, { force: true });
      const pglite = new ManagedProcess({
        name: 'pglite',
        command: process.execPath,
        args: [
          join(REPO_ROOT, 'packages', 'cli', 'src', 'db', 'pglite-server.ts'),
          '--data',
          this.home.pgdata,
          '--port',
          String(asked),
          '--ports-file',
          portsFile,
        ],
        env: { PATH: process.env.PATH, NODE_OPTIONS: '--max-old-space-size=2048' },
        logFile: this.logFile('pglite'),
      });
      this.pglite = pglite;
      // The services' pools reconnect once it is back (health says NOT_SERVING meanwhile).
      this.watchCrash(
        'pglite',
        pglite,
        this.restartOnCrash('pglite', () => this.startDatabase()),
      );
      const bound = await this.awaitPorts('pglite', pglite, () => readPortsFile(portsFile)?.pglite, {
        port: asked,
        variable: 'TALON_PGLITE_PORT',
      });
      if (!validPort(bound)) throw new Error(`the embedded database reported no port (${portsFile})`);
      this.ports.pglite = bound;
    } else {
      this.progress(`using PostgreSQL at ${redactUrl(this.opts.databaseUrl ?? '')}`);
    }
    const deadline = Date.now() + (this.opts.healthTimeoutMs ?? 60_000);
    let lastErr: unknown;
    while (Date.now() < deadline) {
      if (this.pglite && !this.pglite.running) throw new Error(`embedded database exited; see ${this.logFile('pglite')}`);
      try {
        this.dbUrls = await bootstrapDatabase({
          adminUrl: this.adminDatabaseUrl(),
          embedded: this.embedded,
          rolePrefix: this.opts.dbRolePrefix ?? 'talon',
          secretsDir: this.home.db,
        });
        this.progress('database ready (pgvector, roles and schemas)');
        return;
      } catch (err) {
        lastErr = err;
        if (/pgvector/.test(String((err as Error).message))) throw err;
        await sleep(300);
      }
    }
    throw new Error(`database not reachable: ${String((lastErr as Error)?.message ?? lastErr)}`);
  }

  /**
   * Environment of one service process. Settings reach a service when they are
   * its own (`<SERVICE>_*`) or platform-wide (`TALON_*`), except those that must
   * stay with one process: the vault passphrase goes to the vault only, the
   * database admin URL to nobody. Addresses and ports come from the platform.
   */
  serviceEnv(s: ServiceName): Record<string, string | undefined> {
    const p = this.ports;
    const base = this.opts.baseEnv ?? process.env;
    const own = `${s.toUpperCase()}_`;
    const env: Record<string, string | undefined> = {};
    // A peer's address whose port is not known yet (bound to 0, not reported): the
    // service is started now anyway and reads it from the peer's ports file before its
    // config (kit awaitPeerPorts), so services boot in parallel, not one after another.
    const deferred: Record<string, PeerPort> = {};
    const peerAddr = (key: string, peer: ServiceName, role: 'grpc' | 'proxy', template: string) => {
      const port = role === 'grpc' ? p.grpc[peer] : p.egressProxy;
      if (port === 0 && this.procs.get(peer)?.running) {
        deferred[key] = { file: this.portsFile(peer), role, template };
        delete env[key];
      } else env[key] = template.replace('{port}', String(port));
    };
    for (const [k, v] of Object.entries(base)) {
      if (v === undefined) continue;
      if (k.startsWith(own)) env[k] = v;
      else if (k.startsWith('TALON_') && !PLATFORM_ONLY_KEYS.has(k)) env[k] = v;
    }
    Object.assign(env, {
      PATH: base.PATH,
      HOME: base.HOME,
      NODE_ENV: base.NODE_ENV,
      TALON_HOME: this.home.root,
      TALON_NATS_URL: this.natsUrl,
      OTEL_SERVICE_NAME: s,
      OTEL_EXPORTER_OTLP_ENDPOINT: base.OTEL_EXPORTER_OTLP_ENDPOINT,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: base.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
      OTEL_EXPORTER_OTLP_HEADERS: base.OTEL_EXPORTER_OTLP_HEADERS,
      OTEL_BSP_SCHEDULE_DELAY: base.OTEL_BSP_SCHEDULE_DELAY,
      [`${own}GRPC_PORT`]: String(p.grpc[s]),
      [`${own}INTERNAL_PORT`]: String(p.internal[s]),
      [PORTS_FILE_ENV]: this.portsFile(s),
    });
    switch (s) {
      case 'gateway':
        env.TALON_GATEWAY_PORT = String(p.gatewayHttp);
        peerAddr('GATEWAY_EGRESS_URL', 'egress', 'proxy', 'https://127.0.0.1:{port}');
        peerAddr('GATEWAY_EGRESS_ADDR', 'egress', 'grpc', '127.0.0.1:{port}');
        break;
      case 'orchestrator':
        peerAddr('ORCHESTRATOR_MEMORY_ADDR', 'memory', 'grpc', '127.0.0.1:{port}');
        peerAddr('ORCHESTRATOR_EGRESS_URL', 'egress', 'proxy', 'https://127.0.0.1:{port}');
        peerAddr('ORCHESTRATOR_EGRESS_ADDR', 'egress', 'grpc', '127.0.0.1:{port}');
        break;
      case 'memory':
        env.MEMORY_DATABASE_URL = this.dbUrls?.memory;
        break;
      case 'vault':
        env.VAULT_DATABASE_URL = this.dbUrls?.vault;
        env.TALON_VAULT_PASSPHRASE = base.TALON_VAULT_PASSPHRASE;
        break;
      case 'egress':
        env.EGRESS_PROXY_PORT = String(p.egressProxy);
        peerAddr('EGRESS_VAULT_ADDR', 'vault', 'grpc', '127.0.0.1:{port}');
        break;
      case 'sandbox':
        peerAddr('SANDBOX_EGRESS_URL', 'egress', 'proxy', 'https://127.0.0.1:{port}');
        break;
    }
    // Anything the caller set explicitly wins (tests tune timeouts this way).
    for (const [k, v] of Object.entries(this.opts.env ?? {})) {
      if (PLATFORM_ONLY_KEYS.has(k) && !(k === 'TALON_VAULT_PASSPHRASE' && s === 'vault')) continue;
      env[k] = v;
      delete deferred[k];
    }
    if (Object.keys(deferred).length > 0) env[PEER_PORTS_ENV] = JSON.stringify(deferred);
    return env;
  }

  startService(s: ServiceName): ManagedProcess {
    const existing = this.procs.get(s);
    if (existing?.running) return existing;
    const portsFile = this.portsFile(s);
    rmSync(portsFile, { force: true });
    // Before the first start a port may be 0; a restart reuses the ports reported then.
    const proc = new ManagedProcess({
      name: s,
      command: process.execPath,
      args: [...(this.opts.nodeArgs ?? []), join(REPO_ROOT, 'services', s, 'src', 'main.ts')],
      env: this.serviceEnv(s),
      cwd: REPO_ROOT,
      logFile: this.logFile(s),
    });
    this.procs.set(s, proc);
    const startedAt = Date.now();
    this.reportFailures.delete(s);
    // An exit before the report is the crash handler's and waitHealthy's to tell.
    void this.awaitPorts(s, proc, () => readPortsFile(portsFile))
      .then((bound) => this.takePorts(s, bound))
      .catch((err: unknown) => {
        if (proc.running) this.reportFailures.set(s, err as Error);
      });
    this.watchCrash(
      s,
      proc,
      this.restartOnCrash(s, () => void this.startService(s), startedAt),
    );
    return proc;
  }

  /**
   * What happens when a managed process (a service, nats-server, the embedded database)
   * exits unexpectedly under `talon up`: it is started again after a backoff that starts
   * over once it has run healthy for a while, and the output says so.
   */
  private restartOnCrash(name: string, start: () => Promise<void> | void, startedAt = Date.now()): (info: ExitInfo) => void {
    return (info) => {
      if (!this.opts.autoRestart || this.stopping) return;
      // A configuration error (a taken port, an invalid value) fails the same way every time.
      if (info.code === EXIT_CONFIG) return;
      const { attempt, delayMs: delay } = nextRestart(this.restarts.get(name) ?? 0, Date.now() - startedAt);
      this.restarts.set(name, attempt);
      this.progress(`${name} exited unexpectedly; restarting in ${delay} ms, attempt ${attempt} (see ${this.logFile(name)})`);
      setTimeout(() => {
        if (this.stopping) return;
        Promise.resolve()
          .then(start)
          .then(
            () => this.progress(`${name} restarted`),
            // A failed start is itself a crash of the new process (handled by its own watch), or a start step that gave up.
            (err: unknown) => this.progress(`${name} did not restart: ${(err as Error).message}`),
          );
      }, delay).unref();
    };
  }

  /** Records the ports a service reported (and checks it reported the ones it was given). */
  private takePorts(s: ServiceName, bound: BoundPorts): void {
    const want: Array<[string, number]> = [
      ['grpc', this.ports.grpc[s]],
      ['internal', this.ports.internal[s]],
    ];
    if (s === 'gateway') want.push(['http', this.ports.gatewayHttp]);
    if (s === 'egress') want.push(['proxy', this.ports.egressProxy]);
    for (const [role, asked] of want) {
      const got = bound[role];
      if (!validPort(got) || (asked !== 0 && got !== asked))
        throw new Error(`${s} reported ${role} port ${String(got)} (asked for ${asked || 'any'}); see ${this.portsFile(s)}`);
    }
    this.ports.grpc[s] = bound.grpc!;
    this.ports.internal[s] = bound.internal!;
    if (s === 'gateway') this.ports.gatewayHttp = bound.http!;
    if (s === 'egress') this.ports.egressProxy = bound.proxy!;
    this.progress(
      `${s} listening (${Object.entries(bound)
        .map(([role, port]) => `${role} 127.0.0.1:${port}`)
        .join(', ')})`,
    );
  }

  private watchCrash(name: string, proc: ManagedProcess, then?: (info: ExitInfo) => void): void {
    void proc.exited.then((info) => {
      if (this.stopping || proc.expectedExit) return;
      this.opts.onCrash?.(name, info);
      then?.(info);
    });
  }

  /** Polls grpc.health.v1 of each service until SERVING (and the gateway's /healthz). */
  async waitHealthy(services: readonly ServiceName[] = SERVICES, timeoutMs = this.opts.healthTimeoutMs ?? 60_000): Promise<void> {
    const tls = this.tls('admin');
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(services);
    while (pending.size > 0) {
      for (const s of [...pending]) {
        const proc = this.procs.get(s);
        if (proc && !proc.running) {
          const info = await proc.exited;
          // Restarting cannot fix a configuration error: fail at once even under talon up.
          if (!this.opts.autoRestart || info.code === EXIT_CONFIG) {
            throw new Error(await this.startFailure(s, proc));
          }
        }
        const failure = this.reportFailures.get(s);
        if (failure) throw failure;
        // Not reported yet: nothing to ask.
        if (this.ports.grpc[s] === 0) continue;
        try {
          const st = await checkHealth(`127.0.0.1:${this.ports.grpc[s]}`, tls, s, { timeoutMs: 1000 });
          if (st === 'SERVING') {
            pending.delete(s);
            this.progress(`${s} healthy`);
          }
        } catch {
          /* not up yet */
        }
      }
      if (pending.size === 0) break;
      if (Date.now() > deadline)
        throw new Error(`services not healthy after ${timeoutMs} ms: ${[...pending].join(', ')}; logs in ${this.home.logs}`);
      await sleep(150);
    }
  }

  /** Stops nats-server (SIGKILL with `kill`); startNats() brings it back on the same port, its JetStream data kept. */
  async stopNats(opts: { kill?: boolean } = {}): Promise<void> {
    if (this.nats?.running) await stopProcess(this.nats, opts);
  }

  /** Stops one service gracefully (or with SIGKILL when `kill` is set) without restarting it. */
  async stopService(s: ServiceName, opts: { kill?: boolean; graceMs?: number } = {}): Promise<void> {
    const proc = this.procs.get(s);
    if (proc) await stopProcess(proc, opts);
  }

  /** Ordered stop: intake first (gateway), then workers, then key holders, then stores, then NATS. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of STOP_ORDER) {
      const proc = this.procs.get(s);
      if (proc?.running) {
        this.progress(`stopping ${s}`);
        await proc.stop(12_000);
      }
    }
    if (this.pglite?.running) {
      this.progress('stopping embedded PostgreSQL');
      await this.pglite.stop(15_000);
    }
    if (this.nats?.running) {
      this.progress('stopping nats-server');
      await this.nats.stop(10_000);
    }
  }
}
