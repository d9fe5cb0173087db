// Starts the real platform for a test suite: nats-server with the generated
// per-service config on free ports, a fresh database, the six services as OS
// processes, and a fake LLM on loopback. Everything lives in a temporary TALON_HOME.
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNats, createLogger, SERVICES, type NatsConnection, type ServiceName } from '@talon/kit';
import { Platform, type PlatformPorts } from '@talon/cli/platform';
import { createToken } from '@talon/cli/tokens';
import { startFakeLlm, type FakeLlm, type FakeLlmBehaviour } from './fake-llm.ts';
import { createNativeDatabase, testDatabaseKind, type NativeTestDatabase, type TestDatabaseKind } from './database.ts';
import { freePorts } from './ports.ts';

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
  get ports(): PlatformPorts {
    return this.platform.opts.ports;
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
  const [gw, nats, pglite, proxy, ...grpc] = await freePorts(4 + SERVICES.length);
  const ports: PlatformPorts = {
    gatewayHttp: gw!,
    nats: nats!,
    pglite: pglite!,
    egressProxy: proxy!,
    grpc: Object.fromEntries(SERVICES.map((s, i) => [s, grpc[i]!])) as Record<ServiceName, number>,
  };
  const llm = opts.llm === false ? undefined : await startFakeLlm(opts.llm ?? {});
  const native = database === 'native' ? await createNativeDatabase() : undefined;
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
    ...opts.env,
  };
  const platform = new Platform({
    home,
    ports,
    databaseUrl: native?.url,
    dbRolePrefix: native?.rolePrefix ?? 'talon',
    env,
    baseEnv: { ...process.env, ...env },
    autoRestart: false,
    healthTimeoutMs: 60_000,
    nodeArgs: opts.nodeArgs,
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
