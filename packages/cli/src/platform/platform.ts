// Runs the whole platform on one machine: NATS, the database (embedded PGlite or
// an operator's server), and the six services as separate OS processes.
// `talon up` and the test harness both use this; neither duplicates the steps.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'node:http';
import type { TlsMaterial } from '@talon/kit/grpc';
import type { NatsUser } from '@talon/kit/subjects';
import { EXIT_CONFIG, SERVICES, type ServiceName } from '@talon/kit/service';
import { freeLoopbackPort, PEER_PORTS_ENV, PORTS_FILE_ENV, readPortsFile, type BoundPorts, type PeerPort } from '@talon/kit/ports';
import { redactDatabaseUrl } from '@talon/kit/database-url';
import { READYZ_PATH } from '@talon/kit/internal-http';
import type { DbOwner } from './database.ts';
import { ensureDir, prepareHome, type HomeLayout } from './home.ts';
import { SetupChild } from './setup-child.ts';
import type { SetupSteps, StepName } from './setup-steps.ts';
import { nextRestart } from './supervision.ts';
import { assertHomeUntracked } from './git-guard.ts';
import { findNatsServer, readNatsPortsFile, writeNatsConfig } from './nats-server.ts';
import { ManagedProcess, type ExitInfo } from './process.ts';
import { CONFIG_FILE, PROMETHEUS_DIR, TARGETS_FILE, prometheusYml, targetsJson } from './prometheus.ts';
import { portTakenMessage, setPorts, type PlatformPorts } from './endpoints.ts';
import { readRunState, removeRunFile, runFilePath, writeRunFile } from './run-file.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..', '..');

export { defaultPorts, type PlatformPorts, type RunInfo } from './endpoints.ts';
export { readRunState, runFilePath } from './run-file.ts';

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
  /** Extra pglite-server flags for the embedded database (bench: --profile-statements). */
  pgliteArgs?: readonly string[];
  /** Provision JetStream when NATS starts (default yes; tests of `talon provision` say no). */
  provision?: boolean;
  /** nats-server nodes: 1 (default), or a JetStream cluster on loopback (3: streams and buckets R3). */
  natsNodes?: number;
  /** Processes per service (default 1 each): replicas share the work through NATS and their clients' address lists. */
  replicas?: Partial<Record<ServiceName, number>>;
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
/**
 * V8 flags of every service process. Left to itself V8 lets a busy service's heap, its young
 * generation above all, grow for a long while before collecting: measured over 3000 turns the
 * orchestrator went from 122 to 320 MiB resident and kept growing; with these it levels off
 * near 140 MiB at the same turns/s. Later flags (nodeArgs) override them.
 */
const SERVICE_NODE_ARGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=256'];

/**
 * glibc malloc settings of the service processes (and, with more, the embedded database's:
 * PGLITE_MALLOC_ENV; the short-lived setup child and the plugin hosts keep glibc's defaults).
 * By default each thread that allocates gets an arena of its own (up to 8 per core), and what
 * V8's compiler and GC threads freed in theirs stayed resident; two arenas take ≈8 MiB off the
 * six services at idle and ≈10 after 1000 turns, at the same turn latency and egress
 * throughput (bench:up, bench:turn, bench:egress). The container image sets the same
 * (deploy/Dockerfile).
 */
export const MALLOC_ENV: Readonly<Record<string, string>> = Object.freeze({ MALLOC_ARENA_MAX: '2' });

/**
 * The embedded database also gets a fixed 128 KiB mmap threshold: by default the threshold
 * rises to the largest block freed so far, so what its start freed (restoring the template,
 * migrating) and what turns freed stayed in its heap for good (≈39 MiB less at idle, ≈100
 * after 1000 turns). Not for the services: egress would then map and unmap the buffer of
 * every large body (bench:egress at 256 KiB looked slower, within its noise).
 */
export const PGLITE_MALLOC_ENV: Readonly<Record<string, string>> = Object.freeze({
  ...MALLOC_ENV,
  MALLOC_MMAP_THRESHOLD_: '131072',
  MALLOC_TRIM_THRESHOLD_: '131072',
});

/**
 * V8 flags of the embedded database. PostgreSQL compiled to WASM starts on V8's baseline
 * compiler and tiers hot functions up to TurboFan; at the default budget the start alone
 * sends most of postgres through TurboFan: ≈2.5 s of compiler threads in the seconds
 * after the database is ready, while every service is starting on the same cores, and
 * ≈45 MiB more resident. An 8× budget tiers up only what keeps running (turn latency
 * unchanged in bench:turn; bench:up measures start and memory).
 */
const PGLITE_NODE_ARGS: readonly string[] = ['--wasm-tiering-budget=100000000'];

/** Services that keep tables: started once the database is ready (they get its URLs). */
const DATABASE_SERVICES: ReadonlySet<ServiceName> = new Set<ServiceName>(['memory', 'vault']);

/** The service an instance belongs to (`orchestrator-2` → `orchestrator`). */
export function serviceOf(instance: string): ServiceName {
  const s = instance.replace(/-\d+$/, '');
  if (!(SERVICES as readonly string[]).includes(s)) throw new Error(`no Talon service is called ${instance}`);
  return s as ServiceName;
}

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

/** The internal HTTP port's /readyz answer: its status and JSON body (undefined while not up). */
function readyz(port: number): Promise<{ status: number; body: unknown } | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: READYZ_PATH, method: 'GET', timeout: 1000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d.slice(0, 65_536)));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** True when the internal HTTP port answers /readyz with 200 (false while not up or not ready). */
async function ready(port: number): Promise<boolean> {
  return (await readyz(port))?.status === 200;
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
  private readonly reportFailures = new Map<string, Error>();
  /** Services of a start in progress whose ports files their dependents may wait for (serviceEnv). */
  private startingNow: ReadonlySet<ServiceName> = new Set();
  /** nats-server nodes; one unless `natsNodes` asks for a cluster. */
  private readonly natsProcs: Array<ManagedProcess | undefined> = [];
  /** Client and route ports of each nats-server node (node 0's client port is `ports.nats`). */
  private readonly natsPorts: number[] = [];
  private readonly natsRoutePorts: number[] = [];
  private pglite: ManagedProcess | undefined;
  /** Service processes by instance name: `orchestrator`, and `orchestrator-2`… for replicas. */
  private readonly procs = new Map<string, ManagedProcess>();
  /** Ports reported by the instances after the first (the first's are in `ports`). */
  private readonly instancePorts = new Map<string, BoundPorts>();
  private dbUrls: Record<DbOwner, string> | undefined;
  private stopping = false;
  /** Restart attempts since the last healthy run, per process (services, `nats`, `pglite`). */
  private readonly restarts = new Map<string, number>();
  /** What was last written to each file of TALON_HOME/prometheus (rewritten only on a change). */
  private readonly scrapeFiles = new Map<string, string>();
  /** Runs the one-time steps (./setup-steps.ts says why they are in a child). */
  private readonly setup = new SetupChild(() => ({
    ...(this.opts.baseEnv ?? process.env),
    NODE_COMPILE_CACHE: this.compileCache,
    TALON_HOME: this.home.root,
  }));
  /** The identity step's answer (CA, certificates, nkeys): run once, on first need. */
  private identityDone: Promise<SetupSteps['identity']['res']> | undefined;

  constructor(opts: PlatformOptions) {
    this.opts = opts;
    this.ports = { ...opts.ports, grpc: { ...opts.ports.grpc }, internal: { ...opts.ports.internal } };
    this.home = prepareHome(resolve(opts.home));
    // Children run in their own process groups; never leave them behind if we die.
    process.once('exit', () => {
      this.killAll();
      removeRunFile(this.home.root);
    });
  }

  /** Where the embedded database's pristine cluster is kept (TALON_PGLITE_TEMPLATE_DIR; `off`: none), relative to the repository. */
  private get pgdataTemplateDir(): string | undefined {
    const set = (this.opts.baseEnv ?? process.env).TALON_PGLITE_TEMPLATE_DIR;
    if (set === 'off') return undefined;
    return resolve(REPO_ROOT, set || join('node_modules', '.cache', 'talon-pgdata'));
  }

  /** Node's compile cache for every process started here (NODE_COMPILE_CACHE, else one under TALON_HOME). */
  private get compileCache(): string {
    return (this.opts.baseEnv ?? process.env).NODE_COMPILE_CACHE ?? this.home.compileCache;
  }

  /** Runs a one-time step in a child process (./setup-steps.ts says why). */
  private step<K extends StepName>(step: K, req: SetupSteps[K]['req'], signal?: AbortSignal): Promise<SetupSteps[K]['res']> {
    return this.setup.run(step, req, signal);
  }

  /** Keeps the setup child after start() (talon up asks it for the summary); call the result when done. */
  holdSetup(): () => void {
    return this.setup.hold();
  }

  /** The CA, certificates and nkeys, made on the first start of this TALON_HOME; the NATS users' public keys. */
  private async identity(): Promise<Record<NatsUser, string>> {
    this.identityDone ??= this.step('identity', { home: this.home.root }).then((r) => {
      for (const what of r.created) this.progress(`created ${what}`);
      return r;
    });
    return (await this.identityDone).users;
  }

  /** The gateway's /readyz body: its readiness and the facts it adds (docs/architecture.md §1). */
  async gatewayFacts(): Promise<unknown> {
    return (await readyz(this.portOf('gateway', 'internal')))?.body;
  }

  /** What `talon up` prints once started (asked by a setup child: the supervisor holds no gRPC client). */
  summary(): Promise<SetupSteps['summary']['res']> {
    return this.step('summary', {});
  }

  /** Last resort on exit: SIGKILL whatever is still running. */
  killAll(): void {
    for (const p of [...this.procs.values(), this.pglite, ...this.natsProcs]) if (p?.running) p.kill('SIGKILL');
  }

  private progress(msg: string): void {
    this.opts.onProgress?.(msg);
  }

  /** Every node's client URL, comma-separated (clients fail over between them). */
  get natsUrl(): string {
    const ports = this.natsPorts.length > 1 ? this.natsPorts : [this.ports.nats];
    return ports.map((p) => `nats://127.0.0.1:${p}`).join(',');
  }
  get natsNodeCount(): number {
    return Math.max(1, this.opts.natsNodes ?? 1);
  }
  /** `nats` for a single server; `nats-1`, `nats-2`… for the nodes of a cluster. */
  natsNodeName(i: number): string {
    return this.natsNodeCount === 1 ? 'nats' : `nats-${i + 1}`;
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
  /** Where a service instance reports the ports it bound (TALON_PORTS_FILE). */
  portsFile(instance: string): string {
    return join(this.home.run, `${instance}.ports.json`);
  }
  /** The instances of a service: its own name, then `<service>-2`, `<service>-3`… for replicas. */
  instanceNames(s: ServiceName): string[] {
    const n = Math.max(1, this.opts.replicas?.[s] ?? 1);
    return Array.from({ length: n }, (_, i) => (i === 0 ? s : `${s}-${i + 1}`));
  }
  /** A listener's port of an instance (0 while it has not reported it). */
  portOf(instance: string, role: 'grpc' | 'http' | 'proxy' | 'internal'): number {
    const s = serviceOf(instance);
    if (instance !== s) return this.instancePorts.get(instance)?.[role] ?? 0;
    if (role === 'grpc') return this.ports.grpc[s];
    if (role === 'internal') return this.ports.internal[s];
    return role === 'http' ? this.ports.gatewayHttp : this.ports.egressProxy;
  }
  /** Every gateway instance's HTTP address. */
  get gatewayUrls(): string[] {
    return this.instanceNames('gateway').map((i) => `http://127.0.0.1:${this.portOf(i, 'http')}`);
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
  process(name: string): ManagedProcess | undefined {
    if (name === 'pglite') return this.pglite;
    const node = [...this.natsProcs.keys()].find((i) => this.natsNodeName(i) === name || (name === 'nats' && i === 0));
    return node !== undefined ? this.natsProcs[node] : this.procs.get(name);
  }

  async start(services: readonly ServiceName[] = SERVICES): Promise<void> {
    const release = this.setup.hold();
    try {
      await this.startAll(services);
    } finally {
      release();
    }
  }

  private async startAll(services: readonly ServiceName[]): Promise<void> {
    this.checkNotRunning();
    await this.checkSetPortsFree(services);
    assertHomeUntracked(this.home.root);
    const replicated = SERVICES.some((s) => this.instanceNames(s).length > 1);
    if (replicated) {
      await this.identity();
      await this.startNats();
      await this.startDatabase();
      // With replicas, a client gets every replica's address: peers start first and report their ports.
      for (const s of START_ORDER) {
        if (!services.includes(s)) continue;
        this.startService(s);
        await this.waitReported(this.instanceNames(s));
      }
    } else {
      // NATS and the database start side by side; the services that keep no table start as
      // soon as NATS is up, and those that do once the database is ready. A service needing a
      // peer's port not reported yet reads it from the peer's ports file (serviceEnv), so none
      // waits for another to boot — a stale file from an earlier run is removed first.
      const starting = START_ORDER.filter((s) => services.includes(s));
      this.startingNow = new Set(starting);
      for (const s of starting) rmSync(this.portsFile(s), { force: true });
      // The database needs no identity material, so it starts while the identity step runs.
      const database = this.startDatabase();
      // A failed database start is reported by the await below, not as an unhandled rejection.
      database.catch(() => undefined);
      await this.identity();
      await this.startNatsNodes();
      // Services wait for JetStream themselves (kit waitForProvisioning): they boot while it is provisioned.
      const nats = this.natsReady();
      nats.catch(() => undefined);
      for (const s of starting) if (!DATABASE_SERVICES.has(s)) this.startService(s);
      await database;
      for (const s of starting) if (DATABASE_SERVICES.has(s)) this.startService(s);
      this.startingNow = new Set();
      await nats;
    }
    await this.waitHealthy(services);
    // Now the CLI can find it (endpoints.ts): the ports every process reported.
    writeRunFile(this.home.root, { pid: process.pid, natsUrl: this.natsUrl, ports: this.ports });
  }

  /**
   * Two supervisors on one TALON_HOME would share its JetStream and database files:
   * refused while the run file names another live process.
   */
  private checkNotRunning(): void {
    const run = readRunState(this.home.root);
    if (run.kind === 'running' && run.info.pid !== process.pid)
      throw new Error(
        `Talon is already running under TALON_HOME=${this.home.root} (pid ${run.info.pid}); stop it first or use another TALON_HOME (if no such process is Talon, remove ${runFilePath(this.home.root)})`,
      );
  }

  /**
   * Fails at once, naming each variable, when a port that is set (not 0) is already
   * taken, instead of after the database and the other services have started. Only
   * a courtesy: whatever binds later still fails the same way if it lost the port.
   */
  private async checkSetPortsFree(services: readonly ServiceName[]): Promise<void> {
    const taken: string[] = [];
    for (const { port, variable } of setPorts(this.opts.ports, { services, embedded: this.embedded }))
      if (!(await canListen(port))) taken.push(portTakenMessage(variable, port));
    if (taken.length > 0) throw new Error(taken.join('\n'));
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
      ? `${name} could not listen: ${portTakenMessage(inUse.variable, inUse.port)}`
      : info.code === EXIT_CONFIG
        ? `${name} did not start: invalid configuration`
        : `${name} exited during start (code ${info.code ?? '-'}, signal ${info.signal ?? '-'})`;
    return `${head}; last log lines:\n${tail}`;
  }

  /** Starts every nats-server node, then provisions JetStream (R1, or R3 for a cluster) unless told not to. */
  async startNats(): Promise<void> {
    // nats-server is told its ports (a JetStream cluster needs each node's routes in its
    // configuration before it starts), the one exception to "every process binds port 0";
    // a node that loses its port to another process exits and says so.
    await this.startNatsNodes();
    await this.natsReady();
  }

  private async startNatsNodes(): Promise<void> {
    if (this.natsNodeCount > 1) for (let i = 0; i < this.natsNodeCount; i++) this.natsRoutePorts[i] ||= await freeLoopbackPort();
    await Promise.all(Array.from({ length: this.natsNodeCount }, (_, i) => this.startNatsNode(i)));
  }

  private async natsReady(): Promise<void> {
    // Connecting as admin proves the server is this platform's (another Talon's NATS on the
    // port refuses the nkey); a new cluster's provisioning waits for its JetStream leader.
    const provision = this.opts.provision !== false;
    await this.step('nats', {
      home: this.home.root,
      servers: this.natsUrl,
      provision,
      replicas: Math.min(3, this.natsNodeCount),
      timeoutMs: this.opts.healthTimeoutMs ?? 60_000,
    });
    if (provision) this.progress('JetStream streams and buckets provisioned');
  }

  /**
   * Starts node `i`. A restart binds the ports the first start reported (every client has
   * them) and, in a cluster, routes to the other nodes so it rejoins them.
   */
  private async startNatsNode(i: number): Promise<void> {
    const bin = findNatsServer(this.opts.baseEnv ?? process.env);
    const users = await this.identity();
    const name = this.natsNodeName(i);
    const single = this.natsNodeCount === 1;
    // nats-server writes its ports file here once it is ready; old ones are stale.
    const portsDir = ensureDir(join(this.home.run, single ? 'nats' : join('nats', name)));
    for (const f of readdirSync(portsDir)) rmSync(join(portsDir, f), { force: true });
    // Chosen here, outside the ephemeral range, not by nats-server (-1): a restart binds it
    // again, and an ephemeral port can meanwhile be a client's source port (kit ports.ts).
    const known = this.natsPorts[i] || (i === 0 ? this.ports.nats || this.opts.ports.nats : 0);
    const asked = known || (await freeLoopbackPort());
    const config = single ? this.home.natsConfig : join(dirname(this.home.natsConfig), `${name}.conf`);
    const storeDir = single ? this.home.natsStore : join(this.home.natsStore, name);
    const routes = this.natsRoutePorts.filter((p, n) => n !== i && p > 0);
    const routePort = this.natsRoutePorts[i] ?? 0;
    writeNatsConfig({
      file: config,
      host: '127.0.0.1',
      port: asked,
      storeDir,
      users,
      portsFileDir: portsDir,
      ...(single ? {} : { serverName: name, cluster: { port: routePort, routes } }),
    });
    this.progress(`starting ${name === 'nats' ? 'nats-server' : name} on 127.0.0.1:${asked} (JetStream in ${storeDir})`);
    const proc = new ManagedProcess({
      name,
      command: bin,
      args: ['-c', config],
      env: { PATH: process.env.PATH },
      logFile: this.logFile(name),
    });
    this.natsProcs[i] = proc;
    // Services reconnect on their own once nats-server is back on the same port, with its JetStream data.
    this.watchCrash(
      name,
      proc,
      this.restartOnCrash(name, () => this.startNatsNode(i)),
    );
    const pid = proc.pid ?? -1;
    // A port just picked and lost to another process is no setting of the user's: the log says "address in use".
    const inUse = known ? { port: asked, variable: 'TALON_NATS_PORT' } : undefined;
    this.natsPorts[i] = await this.awaitPorts(name, proc, () => readNatsPortsFile(portsDir, pid), inUse);
    if (i === 0) this.ports.nats = this.natsPorts[0]!;
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
          ...PGLITE_NODE_ARGS,
          join(REPO_ROOT, 'packages', 'cli', 'src', 'db', 'pglite-server.ts'),
          '--data',
          this.home.pgdata,
          '--port',
          String(asked),
          '--ports-file',
          portsFile,
          ...(this.pgdataTemplateDir ? ['--template-dir', this.pgdataTemplateDir] : []),
          ...(this.opts.pgliteArgs ?? []),
        ],
        env: this.pgliteEnv(),
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
      this.progress(`using PostgreSQL at ${redactDatabaseUrl(this.opts.databaseUrl ?? '')}`);
    }
    // The step retries until the server answers; an embedded database that exits meanwhile ends it at once.
    const gone = new AbortController();
    const pglite = this.pglite;
    if (pglite) void pglite.exited.then(() => gone.abort());
    try {
      const { urls } = await this.step(
        'database',
        {
          adminUrl: this.adminDatabaseUrl(),
          embedded: this.embedded,
          rolePrefix: this.opts.dbRolePrefix ?? 'talon',
          secretsDir: this.home.db,
          timeoutMs: this.opts.healthTimeoutMs ?? 60_000,
        },
        gone.signal,
      );
      this.dbUrls = urls;
    } catch (err) {
      if (pglite && !pglite.running) throw new Error(`embedded database exited; see ${this.logFile('pglite')}`, { cause: err });
      throw err;
    }
    this.progress('database ready (pgvector, roles and schemas)');
  }

  /** Environment of the embedded database's server: no setting of Talon's reaches it. */
  pgliteEnv(): Record<string, string | undefined> {
    return {
      PATH: process.env.PATH,
      NODE_OPTIONS: '--max-old-space-size=2048 --max-semi-space-size=2',
      NODE_COMPILE_CACHE: this.compileCache,
      ...PGLITE_MALLOC_ENV,
    };
  }

  /**
   * Environment of one service process. Settings reach a service when they are
   * its own (`<SERVICE>_*`) or platform-wide (`TALON_*`), except those that must
   * stay with one process: the vault passphrase goes to the vault only, the
   * database admin URL to nobody. Addresses and ports come from the platform.
   */
  serviceEnv(s: ServiceName, instance: string = s): Record<string, string | undefined> {
    const p = this.ports;
    const base = this.opts.baseEnv ?? process.env;
    const own = `${s.toUpperCase()}_`;
    const env: Record<string, string | undefined> = {};
    // A peer's address whose port is not known yet (bound to 0, not reported): the
    // service is started now anyway and reads it from the peer's ports file before its
    // config (kit awaitPeerPorts), so services boot in parallel, not one after another.
    const deferred: Record<string, PeerPort> = {};
    const peerAddr = (key: string, peer: ServiceName, role: 'grpc' | 'proxy', template: string) => {
      const replicas = this.instanceNames(peer);
      // Replicas have all reported their ports (start waits for them): every address, comma-separated.
      if (replicas.length > 1) {
        env[key] = replicas.map((i) => template.replace('{port}', String(this.portOf(i, role)))).join(',');
        return;
      }
      const port = role === 'grpc' ? p.grpc[peer] : p.egressProxy;
      if (port === 0 && (this.procs.get(peer)?.running || this.startingNow.has(peer))) {
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
      NODE_COMPILE_CACHE: this.compileCache,
      ...MALLOC_ENV,
      TALON_HOME: this.home.root,
      TALON_NATS_URL: this.natsUrl,
      OTEL_SERVICE_NAME: s,
      OTEL_EXPORTER_OTLP_ENDPOINT: base.OTEL_EXPORTER_OTLP_ENDPOINT,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: base.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
      OTEL_EXPORTER_OTLP_HEADERS: base.OTEL_EXPORTER_OTLP_HEADERS,
      OTEL_BSP_SCHEDULE_DELAY: base.OTEL_BSP_SCHEDULE_DELAY,
      [`${own}GRPC_PORT`]: String(this.portOf(instance, 'grpc')),
      [`${own}INTERNAL_PORT`]: String(this.portOf(instance, 'internal')),
      [PORTS_FILE_ENV]: this.portsFile(instance),
    });
    switch (s) {
      case 'gateway':
        env.TALON_GATEWAY_PORT = String(this.portOf(instance, 'http'));
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
        env.EGRESS_PROXY_PORT = String(this.portOf(instance, 'proxy'));
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

  /** Starts every instance of a service that is not running; returns the first. */
  startService(s: ServiceName): ManagedProcess {
    const [first, ...rest] = this.instanceNames(s).map((i) => this.startInstance(i));
    void rest;
    return first!;
  }

  /** Starts one instance (`gateway`, `gateway-2`…) unless it is running. */
  startInstance(instance: string): ManagedProcess {
    const s = serviceOf(instance);
    const existing = this.procs.get(instance);
    if (existing?.running) return existing;
    const portsFile = this.portsFile(instance);
    rmSync(portsFile, { force: true });
    // Before the first start a port may be 0; a restart reuses the ports reported then.
    const proc = new ManagedProcess({
      name: instance,
      command: process.execPath,
      args: [...SERVICE_NODE_ARGS, ...(this.opts.nodeArgs ?? []), join(REPO_ROOT, 'services', s, 'src', 'main.ts')],
      env: this.serviceEnv(s, instance),
      cwd: REPO_ROOT,
      logFile: this.logFile(instance),
    });
    this.procs.set(instance, proc);
    const startedAt = Date.now();
    this.reportFailures.delete(instance);
    // An exit before the report is the crash handler's and waitHealthy's to tell.
    void this.awaitPorts(instance, proc, () => readPortsFile(portsFile))
      .then((bound) => this.takePorts(instance, bound))
      .catch((err: unknown) => {
        if (proc.running) this.reportFailures.set(instance, err as Error);
      });
    this.watchCrash(
      instance,
      proc,
      this.restartOnCrash(instance, () => void this.startInstance(instance), startedAt),
    );
    return proc;
  }

  /** Waits until each instance has reported its ports (fails when one exits or its report is unusable). */
  private async waitReported(instances: readonly string[], timeoutMs = this.opts.healthTimeoutMs ?? 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pending = instances.filter((i) => this.portOf(i, 'grpc') === 0);
      if (pending.length === 0) return;
      for (const i of pending) {
        const failure = this.reportFailures.get(i);
        if (failure) throw failure;
        const proc = this.procs.get(i);
        if (proc && !proc.running) throw new Error(await this.startFailure(i, proc));
      }
      if (Date.now() > deadline) throw new Error(`${pending.join(', ')} did not report their ports within ${timeoutMs} ms`);
      await sleep(25);
    }
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

  /** Records the ports an instance reported (and checks it reported the ones it was given). */
  private takePorts(instance: string, bound: BoundPorts): void {
    const s = serviceOf(instance);
    const roles: Array<'grpc' | 'internal' | 'http' | 'proxy'> = ['grpc', 'internal'];
    if (s === 'gateway') roles.push('http');
    if (s === 'egress') roles.push('proxy');
    for (const role of roles) {
      const asked = this.portOf(instance, role);
      const got = bound[role];
      if (!validPort(got) || (asked !== 0 && got !== asked))
        throw new Error(`${instance} reported ${role} port ${String(got)} (asked for ${asked || 'any'}); see ${this.portsFile(instance)}`);
    }
    if (instance !== s) this.instancePorts.set(instance, bound);
    else {
      this.ports.grpc[s] = bound.grpc!;
      this.ports.internal[s] = bound.internal!;
      if (s === 'gateway') this.ports.gatewayHttp = bound.http!;
      if (s === 'egress') this.ports.egressProxy = bound.proxy!;
    }
    this.writeScrapeTargets();
    this.progress(
      `${instance} listening (${Object.entries(bound)
        .map(([role, port]) => `${role} 127.0.0.1:${port}`)
        .join(', ')})`,
    );
  }

  /**
   * TALON_HOME/prometheus/targets.json (file-based discovery of every instance's /metrics)
   * and a prometheus.yml that reads it, atomically, whenever an instance reports its ports
   * and the content changed. A failed write is reported, never fatal: it only costs metrics.
   */
  private writeScrapeTargets(): void {
    const env = { ...(this.opts.baseEnv ?? process.env), ...this.opts.env };
    const endpoints = [...this.procs.keys()].map((instance) => {
      const service = serviceOf(instance);
      return { instance, service, bindHost: env[`${service.toUpperCase()}_INTERNAL_HOST`], port: this.portOf(instance, 'internal') };
    });
    const dir = join(this.home.root, PROMETHEUS_DIR);
    const targetsFile = join(dir, TARGETS_FILE);
    try {
      ensureDir(dir);
      for (const [file, content] of [
        [targetsFile, targetsJson(endpoints)],
        [join(dir, CONFIG_FILE), prometheusYml({ targetsFile })],
      ] as const) {
        if (this.scrapeFiles.get(file) === content) continue;
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, content);
        renameSync(tmp, file);
        this.scrapeFiles.set(file, content);
      }
    } catch (err) {
      this.progress(`could not write the Prometheus targets in ${dir} (${(err as Error).message}); metrics are served all the same`);
    }
  }

  private watchCrash(name: string, proc: ManagedProcess, then?: (info: ExitInfo) => void): void {
    void proc.exited.then((info) => {
      if (this.stopping || proc.expectedExit) return;
      this.opts.onCrash?.(name, info);
      then?.(info);
    });
  }

  /**
   * Polls each instance's /readyz until ready: the readiness its grpc.health.v1 reports (one
   * owner, kit readiness.ts), asked over plain HTTP so the supervisor needs no gRPC client.
   */
  async waitHealthy(services: readonly ServiceName[] = SERVICES, timeoutMs = this.opts.healthTimeoutMs ?? 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(services.flatMap((s) => this.instanceNames(s)));
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
        const port = this.portOf(s, 'internal');
        if (port === 0) continue;
        if (await ready(port)) {
          pending.delete(s);
          this.progress(`${s} healthy`);
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
    for (const p of this.natsProcs) if (p?.running) await stopProcess(p, opts);
  }

  /** Stops one service gracefully (or with SIGKILL when `kill` is set) without restarting it. */
  async stopService(s: ServiceName, opts: { kill?: boolean; graceMs?: number } = {}): Promise<void> {
    for (const i of this.instanceNames(s)) {
      const proc = this.procs.get(i);
      if (proc) await stopProcess(proc, opts);
    }
  }

  /** Ordered stop: intake first (gateway), then workers, then key holders, then stores, then NATS. */
  async stop(): Promise<void> {
    this.stopping = true;
    // From now on the CLI says Talon is not running rather than reaching a half-stopped one.
    removeRunFile(this.home.root);
    for (const s of STOP_ORDER) {
      // Replicas of one service stop together.
      const running = this.instanceNames(s).flatMap((i) => {
        const proc = this.procs.get(i);
        return proc?.running ? [[i, proc] as const] : [];
      });
      if (running.length === 0) continue;
      this.progress(`stopping ${running.map(([i]) => i).join(', ')}`);
      await Promise.all(running.map(([, proc]) => proc.stop(12_000)));
    }
    if (this.pglite?.running) {
      this.progress('stopping embedded PostgreSQL');
      await this.pglite.stop(15_000);
    }
    for (const [i, p] of this.natsProcs.entries())
      if (p?.running) {
        this.progress(`stopping ${this.natsNodeName(i) === 'nats' ? 'nats-server' : this.natsNodeName(i)}`);
        await p.stop(10_000);
      }
  }
}
