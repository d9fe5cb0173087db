// Starts the real platform for a test suite: nats-server with the generated
// per-service config, a fresh database, the six services as OS
// processes, and a fake LLM on loopback. Everything lives in a temporary TALON_HOME.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectNats, type NatsConnection } from '@talon/kit/nats';
import { createClient, unary } from '@talon/kit/grpc';
import { createLogger } from '@talon/kit/log';
import { SERVICES, type ServiceName } from '@talon/kit/service';
import { VaultAdminServiceClient } from '@talon/proto';
import { Platform, REPO_ROOT, type PlatformPorts } from '@talon/cli/platform';
import { createToken } from '@talon/cli/tokens';
import { startFakeLlm, type FakeLlm, type FakeLlmBehaviour } from './fake-llm.ts';
import { createNativeDatabase, testDatabaseKind, type NativeTestDatabase, type TestDatabaseKind } from './database.ts';

const CLI_BIN = join(REPO_ROOT, 'packages/cli/src/bin.ts');

export interface TestPlatformOptions {
  services?: readonly ServiceName[];
  /** Service environment overrides. */
  env?: Record<string, string | undefined>;
  /** Start a fake LLM with this behaviour (default: echo). `false`: none. */
  llm?: FakeLlmBehaviour | false;
  database?: TestDatabaseKind;
  /** Keep TALON_HOME after stop (debugging). */
  keepHome?: boolean;
  /** Extra Node.js flags for the service processes. */
  nodeArgs?: readonly string[];
  /** Extra flags for the embedded database's server (pglite-server.ts). */
  pgliteArgs?: readonly string[];
  /** Restart a process that exits unexpectedly, as `talon up` does (default: no). */
  autoRestart?: boolean;
  /** Progress lines of the platform (starts, restarts). */
  onProgress?: (msg: string) => void;
  /** nats-server nodes (3: a JetStream cluster on loopback with R3 streams). */
  natsNodes?: number;
  /** Processes per service (replicas). */
  replicas?: Partial<Record<ServiceName, number>>;
  /** The PostgreSQL server a native test database is created on (default TALON_TEST_DATABASE_URL). */
  nativeAdminUrl?: string;
}

/** The assistant text of a streamed (SSE) chat completion, as the gateway sends it. */
export function streamedText(sse: string): string {
  return sse
    .split('\n\n')
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .map((e) => (JSON.parse(e.slice(6)) as { choices: Array<{ delta?: { content?: string } }> }).choices[0]?.delta?.content ?? '')
    .join('');
}

export class TestPlatform {
  readonly platform: Platform;
  readonly llm: FakeLlm | undefined;
  readonly home: string;
  readonly database: TestDatabaseKind;
  private readonly native: NativeTestDatabase | undefined;
  private readonly keepHome: boolean;
  private adminNc: NatsConnection | undefined;

  constructor(
    p: Platform,
    llm: FakeLlm | undefined,
    home: string,
    database: TestDatabaseKind,
    native: NativeTestDatabase | undefined,
    keepHome: boolean,
  ) {
    this.platform = p;
    this.llm = llm;
    this.home = home;
    this.database = database;
    this.native = native;
    this.keepHome = keepHome;
  }

  get gatewayUrl(): string {
    return this.platform.gatewayUrl;
  }
  /** The ports in use (each process bound a free one and reported it). */
  get ports(): PlatformPorts {
    return this.platform.ports;
  }

  async admin(): Promise<NatsConnection> {
    this.adminNc ??= await connectNats({
      servers: this.platform.natsUrl,
      user: 'admin',
      seedFile: join(this.home, 'nats', 'admin.nk'),
      log: createLogger({ service: 'test', level: 'silent' }),
    });
    return this.adminNc;
  }

  /**
   * Runs the `talon` CLI against this platform (its TALON_HOME, NATS and vault), as an
   * operator would; `input` goes to stdin (secret values are never arguments).
   */
  cli(args: readonly string[], input?: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
    return spawnSync(process.execPath, [CLI_BIN, ...args], { input, encoding: 'utf8', env: this.cliEnv(env) });
  }

  /**
   * cli(), without blocking this process: for commands that reach a fake this test process
   * serves (an MCP server, an LLM provider), which a blocked event loop could not answer.
   */
  cliAsync(
    args: readonly string[],
    input?: string,
    env: Record<string, string> = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((done, fail) => {
      const p = spawn(process.execPath, [CLI_BIN, ...args], { env: this.cliEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('error', fail);
      p.on('close', (code) => done({ code: code ?? 1, stdout, stderr }));
      p.stdin.end(input ?? '');
    });
  }

  /** The CLI's environment: this platform's TALON_HOME, NATS and vault, then `env`. */
  private cliEnv(env: Record<string, string>): NodeJS.ProcessEnv {
    const vault = this.ports.grpc.vault;
    return {
      ...process.env,
      TALON_HOME: this.home,
      TALON_NATS_URL: this.platform.natsUrl,
      ...(vault ? { VAULT_GRPC_PORT: String(vault) } : {}),
      ...env,
    };
  }

  async token(name = 'alice', opts: { userId?: string; scope?: 'user' | 'operator' } = {}): Promise<string> {
    return (await createToken(await this.admin(), { name, ...opts })).token;
  }

  /** POST /v1/chat/completions; returns status and parsed JSON (or raw SSE text when streaming). */
  async chat(
    token: string | undefined,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; json: any; text: string; headers: Headers }> {
    const res = await fetch(`${this.gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, headers: res.headers };
  }

  log(name: string): string {
    const f = this.platform.logFile(name);
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }

  /** Polls `read` until it returns something other than undefined/false; fails after `timeoutMs` naming `what`. */
  async until<T>(what: string, read: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await read();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(50);
    }
  }

  /**
   * Waits until egress has loaded the vault's current state (secrets, seal), e.g. after a
   * secret was stored: the vault pushes every change to egress (VaultService.Watch) and egress
   * logs each scan index it loads with the vault's epoch, which moves on every secret change,
   * seal and unseal.
   */
  async egressCaughtUpWithVault(timeoutMs = 30_000): Promise<void> {
    const vault = createClient(VaultAdminServiceClient, `127.0.0.1:${this.ports.grpc.vault}`, this.platform.tls('admin'), 'vault');
    let epoch: number;
    try {
      epoch = Number((await unary(vault, vault.status, {})).epoch);
    } finally {
      vault.close();
    }
    await this.until(
      `egress to load the vault's scan index of epoch ${epoch}`,
      () =>
        this.log('egress')
          .split('\n')
          .some((l) => l.includes('"scan index refreshed from vault"') && Number(/"epoch":(\d+)/.exec(l)?.[1] ?? -1) >= epoch),
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    await this.adminNc?.close().catch(() => undefined);
    await this.platform.stop();
    await this.llm?.close();
    await this.native?.drop().catch(() => undefined);
    if (!this.keepHome) rmSync(this.home, { recursive: true, force: true });
  }
}

export async function startTestPlatform(opts: TestPlatformOptions = {}): Promise<TestPlatform> {
  const database = opts.database ?? testDatabaseKind();
  const home = mkdtempSync(join(tmpdir(), 'talon-test-'));
  // Every process binds port 0 and reports the port it got: two suites running side by
  // side never race for a port picked here and bound later.
  const ports: PlatformPorts = {
    gatewayHttp: 0,
    nats: 0,
    pglite: 0,
    egressProxy: 0,
    grpc: Object.fromEntries(SERVICES.map((s) => [s, 0])) as Record<ServiceName, number>,
    internal: Object.fromEntries(SERVICES.map((s) => [s, 0])) as Record<ServiceName, number>,
  };
  const llm = opts.llm === false ? undefined : await startFakeLlm(opts.llm ?? {});
  const native = database === 'native' ? await createNativeDatabase(opts.nativeAdminUrl) : undefined;
  const env: Record<string, string | undefined> = {
    TALON_LOG_LEVEL: process.env.TALON_TEST_LOG_LEVEL ?? 'info',
    ...(llm
      ? {
          TALON_LLM_BASE_URL: llm.url,
          TALON_LLM_MODEL: 'fake-model',
          TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${llm.port}`,
          TALON_LLM_API_KEY_SECRET: 'none',
        }
      : {}),
    ORCHESTRATOR_ACK_WAIT_MS: '3000',
    // OWASP's minimum Argon2id cost keeps keyring creation fast in tests; the
    // vault's own suite and bench measure the production parameters.
    VAULT_KDF_MEMORY_KIB: '19456',
    VAULT_KDF_PASSES: '2',
    TALON_SHUTDOWN_TIMEOUT_MS: '5000',
    // One compile cache for every test platform (the same code each time): only the first
    // start of a run compiles and strips types, the others load cached code.
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'talon-test-compile-cache'),
    ...opts.env,
  };
  const platform = new Platform({
    home,
    ports,
    databaseUrl: native?.url,
    dbRolePrefix: native?.rolePrefix ?? 'talon',
    env,
    baseEnv: { ...process.env, ...env },
    autoRestart: opts.autoRestart ?? false,
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
    ...(opts.natsNodes ? { natsNodes: opts.natsNodes } : {}),
    ...(opts.replicas ? { replicas: opts.replicas } : {}),
    // A ceiling, not a wait: start returns as soon as everything is healthy (a loaded machine can take a while).
    healthTimeoutMs: 120_000,
    nodeArgs: opts.nodeArgs,
    pgliteArgs: opts.pgliteArgs,
  });
  const tp = new TestPlatform(platform, llm, home, database, native, opts.keepHome ?? process.env.TALON_TEST_KEEP_HOME === '1');
  try {
    await platform.start(opts.services ?? SERVICES);
  } catch (err) {
    await tp.stop().catch(() => undefined);
    throw err;
  }
  return tp;
}
