// Runs the whole platform on one machine: NATS, the database (embedded PGlite or
// an operator's server), and the six services as separate OS processes.
// `talon up` and the test harness both use this; neither duplicates the steps.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  checkHealth,
  connectNats,
  createLogger,
  DEFAULT_PORTS,
  provisionJetStream,
  SERVICES,
  type ServiceName,
  type TlsMaterial,
} from '@talon/kit';
import { bootstrapDatabase, redactUrl, type DbOwner } from './database.ts';
import { ensureNkeys, ensurePki, prepareHome, type HomeLayout } from './home.ts';
import { findNatsServer, writeNatsConfig } from './nats-server.ts';
import { ManagedProcess } from './process.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..', '..');

export interface PlatformPorts {
  gatewayHttp: number;
  nats: number;
  pglite: number;
  egressProxy: number;
  grpc: Record<ServiceName, number>;
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
  };
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
  healthTimeoutMs?: number;
  /** Extra Node.js flags for service processes (tests: --heapsnapshot-signal). */
  nodeArgs?: readonly string[];
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

export class Platform {
  readonly opts: PlatformOptions;
  readonly home: HomeLayout;
  private nats: ManagedProcess | undefined;
  private pglite: ManagedProcess | undefined;
  private readonly procs = new Map<ServiceName, ManagedProcess>();
  private dbUrls: Record<DbOwner, string> | undefined;
  private stopping = false;
  private readonly restarts = new Map<ServiceName, number>();

  constructor(opts: PlatformOptions) {
    this.opts = opts;
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
    return `nats://127.0.0.1:${this.opts.ports.nats}`;
  }
  get gatewayUrl(): string {
    return `http://127.0.0.1:${this.opts.ports.gatewayHttp}`;
  }
  get egressProxyUrl(): string {
    return `https://127.0.0.1:${this.opts.ports.egressProxy}`;
  }
  get embedded(): boolean {
    return !this.opts.databaseUrl;
  }
  get embeddedDatabaseUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.opts.ports.pglite}/postgres`;
  }
  adminDatabaseUrl(): string {
    return this.opts.databaseUrl ?? this.embeddedDatabaseUrl;
  }
  logFile(name: string): string {
    return join(this.home.logs, `${name}.log`);
  }
  /** mTLS material of an identity (the CLI uses `admin`). */
  tls(identity: string): TlsMaterial {
    return {
      ca: readFileSync(join(this.home.pki, 'ca.crt')),
      cert: readFileSync(join(this.home.pki, `${identity}.crt`)),
      key: readFileSync(join(this.home.pki, `${identity}.key`)),
    };
  }
  process(name: ServiceName): ManagedProcess | undefined {
    return this.procs.get(name);
  }

  async start(services: readonly ServiceName[] = SERVICES): Promise<void> {
    await ensurePki(this.home, (what) => this.progress(`created ${what}`));
    await this.startNats();
    await this.startDatabase();
    for (const s of START_ORDER) if (services.includes(s)) this.startService(s);
    await this.waitHealthy(services);
  }

  async startNats(): Promise<void> {
    const bin = findNatsServer(this.opts.baseEnv ?? process.env);
    const users = ensureNkeys(this.home);
    writeNatsConfig({ file: this.home.natsConfig, host: '127.0.0.1', port: this.opts.ports.nats, storeDir: this.home.natsStore, users });
    this.progress(`starting nats-server on ${this.natsUrl} (JetStream in ${this.home.natsStore})`);
    this.nats = new ManagedProcess({
      name: 'nats',
      command: bin,
      args: ['-c', this.home.natsConfig],
      env: { PATH: process.env.PATH },
      logFile: this.logFile('nats'),
    });
    this.watchCrash('nats', this.nats);
    const log = createLogger({ service: 'talon-up', level: 'silent' });
    const nc = await connectNats({
      servers: this.natsUrl,
      user: 'admin',
      seedFile: join(this.home.nats, 'admin.nk'),
      log,
      connectTimeoutMs: 15_000,
    });
    try {
      await provisionJetStream(nc);
    } finally {
      await nc.drain();
    }
    this.progress('JetStream streams and buckets provisioned');
  }

  async startDatabase(): Promise<void> {
    if (this.embedded) {
      this.progress(`starting embedded PostgreSQL (PGlite + pgvector) on 127.0.0.1:${this.opts.ports.pglite}, data in ${this.home.pgdata}`);
      this.pglite = new ManagedProcess({
        name: 'pglite',
        command: process.execPath,
        args: [
          join(REPO_ROOT, 'packages', 'cli', 'src', 'db', 'pglite-server.ts'),
          '--data',
          this.home.pgdata,
          '--port',
          String(this.opts.ports.pglite),
        ],
        env: { PATH: process.env.PATH, NODE_OPTIONS: '--max-old-space-size=2048' },
        logFile: this.logFile('pglite'),
      });
      this.watchCrash('pglite', this.pglite);
    } else {
      this.progress(`using PostgreSQL at ${redactUrl(this.opts.databaseUrl ?? '')}`);
    }
    const deadline = Date.now() + 60_000;
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
    const p = this.opts.ports;
    const base = this.opts.baseEnv ?? process.env;
    const own = `${s.toUpperCase()}_`;
    const env: Record<string, string | undefined> = {};
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
    });
    switch (s) {
      case 'gateway':
        env.TALON_GATEWAY_PORT = String(p.gatewayHttp);
        env.GATEWAY_EGRESS_URL = this.egressProxyUrl;
        env.GATEWAY_EGRESS_ADDR = `127.0.0.1:${p.grpc.egress}`;
        break;
      case 'orchestrator':
        env.ORCHESTRATOR_MEMORY_ADDR = `127.0.0.1:${p.grpc.memory}`;
        env.ORCHESTRATOR_EGRESS_URL = this.egressProxyUrl;
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
        env.EGRESS_VAULT_ADDR = `127.0.0.1:${p.grpc.vault}`;
        break;
      case 'sandbox':
        env.SANDBOX_EGRESS_URL = this.egressProxyUrl;
        break;
    }
    // Anything the caller set explicitly wins (tests tune timeouts this way).
    for (const [k, v] of Object.entries(this.opts.env ?? {})) {
      if (PLATFORM_ONLY_KEYS.has(k) && !(k === 'TALON_VAULT_PASSPHRASE' && s === 'vault')) continue;
      env[k] = v;
    }
    return env;
  }

  startService(s: ServiceName): ManagedProcess {
    const existing = this.procs.get(s);
    if (existing?.running) return existing;
    const proc = new ManagedProcess({
      name: s,
      command: process.execPath,
      args: [...(this.opts.nodeArgs ?? []), join(REPO_ROOT, 'services', s, 'src', 'main.ts')],
      env: this.serviceEnv(s),
      cwd: REPO_ROOT,
      logFile: this.logFile(s),
    });
    this.procs.set(s, proc);
    this.watchCrash(s, proc, () => {
      if (!this.opts.autoRestart || this.stopping) return;
      const n = (this.restarts.get(s) ?? 0) + 1;
      this.restarts.set(s, n);
      const delay = Math.min(30_000, 500 * 2 ** Math.min(n, 6));
      this.progress(`${s} exited unexpectedly; restarting in ${delay} ms (see ${this.logFile(s)})`);
      setTimeout(() => {
        if (!this.stopping) this.startService(s);
      }, delay).unref();
    });
    return proc;
  }

  private watchCrash(name: string, proc: ManagedProcess, then?: () => void): void {
    void proc.exited.then((info) => {
      if (this.stopping || proc.expectedExit) return;
      this.opts.onCrash?.(name, info);
      then?.();
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
        if (proc && !proc.running && !this.opts.autoRestart) {
          const tail = existsSync(this.logFile(s)) ? readFileSync(this.logFile(s), 'utf8').split('\n').slice(-15).join('\n') : '';
          throw new Error(`${s} exited during start (code ${(await proc.exited).code}); last log lines:\n${tail}`);
        }
        try {
          const st = await checkHealth(`127.0.0.1:${this.opts.ports.grpc[s]}`, tls, s, { timeoutMs: 1000 });
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

  /** Stops one service gracefully (or with SIGKILL when `kill` is set) without restarting it. */
  async stopService(s: ServiceName, opts: { kill?: boolean; graceMs?: number } = {}): Promise<void> {
    const proc = this.procs.get(s);
    if (!proc) return;
    proc.expectedExit = true;
    if (opts.kill) {
      proc.kill('SIGKILL');
      await proc.exited;
    } else await proc.stop(opts.graceMs ?? 10_000);
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
