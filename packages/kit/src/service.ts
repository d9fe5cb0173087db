// Shared pieces of every service's boot: common config fields, default ports,
// and a main() wrapper that turns config errors into a clear message and exit code.
import { resolve } from 'node:path';
import { ConfigError, int, optionalStr, port, str, oneOf, url, type Field } from './config.ts';
import { scrub } from './scrub.ts';
import { awaitPeerPorts } from './ports.ts';

export const SERVICES = ['gateway', 'orchestrator', 'memory', 'vault', 'sandbox', 'egress'] as const;
export type ServiceName = (typeof SERVICES)[number];

/**
 * The ports a service binds when run on its own (containers, compose, Kubernetes) and
 * its variable is unset. `talon up` instead gives every internal listener a free port
 * unless its variable is set, and writes the ports it got to TALON_HOME/run/platform.json
 * (packages/cli/src/platform/endpoints.ts); only the gateway's public 8080 stays.
 */
export const DEFAULT_PORTS = {
  gatewayHttp: 8080,
  nats: 4223,
  pglite: 5433,
  egressProxy: 7480,
  grpc: { gateway: 7401, orchestrator: 7402, memory: 7403, vault: 7404, sandbox: 7405, egress: 7406 },
  /** The internal HTTP port of each service: /livez, /readyz (internal-http.ts). */
  internal: { gateway: 7411, orchestrator: 7412, memory: 7413, vault: 7414, sandbox: 7415, egress: 7416 },
} as const;

export function talonHome(env: Record<string, string | undefined> = process.env): string {
  return resolve(env.TALON_HOME && env.TALON_HOME.trim() !== '' ? env.TALON_HOME : '.talon');
}

export function pkiPaths(home: string, identity: string): { ca: string; cert: string; key: string } {
  return {
    ca: resolve(home, 'pki', 'ca.crt'),
    cert: resolve(home, 'pki', `${identity}.crt`),
    key: resolve(home, 'pki', `${identity}.key`),
  };
}

export function natsSeedPath(home: string, user: string): string {
  return resolve(home, 'nats', `${user}.nk`);
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Fields every service has: logging, mTLS files, its gRPC and internal HTTP listeners, shutdown budget. */
export function commonFields(service: ServiceName, env: Record<string, string | undefined> = process.env) {
  const up = service.toUpperCase();
  const home = talonHome(env);
  const pki = pkiPaths(home, service);
  return {
    home: str('TALON_HOME', {
      doc: 'Directory holding Talon state (certificates, NATS data, embedded database, logs).',
      default: '.talon',
    }),
    logLevel: oneOf('TALON_LOG_LEVEL', LOG_LEVELS, { doc: 'Log level for every service.', default: 'info' }),
    tlsCa: str('TALON_TLS_CA', { doc: 'CA certificate (PEM) that signs every Talon workload certificate.', default: pki.ca }),
    tlsCert: str(`${up}_TLS_CERT`, { doc: `${service}'s certificate (PEM) naming spiffe://talon/${service}.`, default: pki.cert }),
    tlsKey: str(`${up}_TLS_KEY`, { doc: `${service}'s private key (PEM, mode 0600).`, default: pki.key }),
    grpcHost: str(`${up}_GRPC_HOST`, { doc: `Address ${service}'s gRPC server (and grpc.health.v1) listens on.`, default: '127.0.0.1' }),
    grpcPort: port(`${up}_GRPC_PORT`, { doc: `Port of ${service}'s gRPC server.`, default: DEFAULT_PORTS.grpc[service] }),
    internalHost: str(`${up}_INTERNAL_HOST`, {
      doc: `Address ${service}'s internal HTTP port listens on (/livez, /readyz, /metrics); loopback by default, 0.0.0.0 in a container. Never expose it publicly.`,
      default: '127.0.0.1',
    }),
    internalPort: port(`${up}_INTERNAL_PORT`, {
      doc: `Port of ${service}'s internal HTTP server (/livez, /readyz, /metrics), for probes and scrapers only: do not expose it publicly. 0 picks a free one.`,
      default: DEFAULT_PORTS.internal[service],
    }),
    metrics: oneOf('TALON_METRICS', ['on', 'off'], {
      doc: 'Metrics (Prometheus text on GET /metrics of the internal port; OTLP too when OTEL_EXPORTER_OTLP_ENDPOINT is set). off: every instrument is a no-op.',
      default: 'on',
    }),
    shutdownTimeoutMs: int('TALON_SHUTDOWN_TIMEOUT_MS', {
      doc: 'Upper bound for a graceful shutdown before the process exits anyway.',
      default: 15_000,
      min: 100,
    }),
  } satisfies Record<string, Field<unknown>>;
}

/** NATS fields for workloads that hold NATS credentials. */
export function natsFields(service: ServiceName, env: Record<string, string | undefined> = process.env) {
  const up = service.toUpperCase();
  return {
    natsUrl: str('TALON_NATS_URL', { doc: 'NATS server URL(s), comma-separated.', default: `nats://127.0.0.1:${DEFAULT_PORTS.nats}` }),
    natsSeedFile: str(`${up}_NATS_SEED_FILE`, {
      doc: `File holding ${service}'s NATS nkey seed (mode 0600); its public key is a user in the nats-server config.`,
      default: natsSeedPath(talonHome(env), service),
    }),
  } satisfies Record<string, Field<unknown>>;
}

/**
 * Chat-platform API endpoints. The gateway delivers to them and egress allows the
 * gateway exactly these: both read the same keys.
 */
export function channelApiFields() {
  return {
    telegramApiUrl: url('TALON_TELEGRAM_API_URL', {
      doc: 'Telegram Bot API base URL (egress must allow the gateway to reach it).',
      default: 'https://api.telegram.org',
    }),
    slackApiUrl: url('TALON_SLACK_API_URL', {
      doc: 'Slack Web API base URL (egress must allow the gateway to reach it).',
      default: 'https://slack.com/api',
    }),
    discordApiUrl: url('TALON_DISCORD_API_URL', {
      doc: 'Discord REST API base URL (egress must allow the gateway to reach it).',
      default: 'https://discord.com/api/v10',
    }),
    slackSocketUrl: url('TALON_SLACK_SOCKET_URL', {
      doc: 'Where Slack Socket Mode connections go (apps.connections.open names the exact URL; egress allows the gateway this host and its sibling hosts: wss://wss-primary.slack.com allows *.slack.com).',
      default: 'wss://wss-primary.slack.com',
      protocols: ['wss:', 'ws:'],
    }),
    discordGatewayUrl: url('TALON_DISCORD_GATEWAY_URL', {
      doc: 'Discord Gateway WebSocket URL (egress allows the gateway this host and, for resume URLs, its sibling hosts: wss://gateway.discord.gg allows *.discord.gg).',
      default: 'wss://gateway.discord.gg',
      protocols: ['wss:', 'ws:'],
    }),
    matrixHomeserverUrl: optionalStr('TALON_MATRIX_HOMESERVER_URL', {
      doc: 'Matrix homeserver base URL (client-server API, e.g. https://matrix.example.org), needed when TALON_CHANNELS has matrix; egress allows the gateway this host (GET, POST and PUT).',
      pattern: /^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/,
    }),
    whatsappApiUrl: url('TALON_WHATSAPP_API_URL', {
      doc: 'WhatsApp Cloud API (Meta Graph API) base URL, version included (egress must allow the gateway to reach it).',
      default: 'https://graph.facebook.com/v21.0',
    }),
    webhookCallbackUrl: optionalStr('TALON_WEBHOOK_CALLBACK_URL', {
      doc: 'Where replies to the generic signed webhook are POSTed (through egress, with Authorization: Bearer {{secret:<GATEWAY_WEBHOOK_CALLBACK_SECRET>}}). Unset: generic webhook turns run without a delivered reply.',
      pattern: /^https?:\/\/\S+$/,
    }),
    mattermostUrl: optionalStr('TALON_MATTERMOST_URL', {
      doc: 'Your Mattermost server (https://chat.example.com, with its path if served under one): the gateway opens its WebSocket API (wss://…/api/v4/websocket) and posts replies to its REST API there, through egress, which allows the gateway this host. Needed for the mattermost channel.',
      pattern: /^https?:\/\/[^\s?#]+$/,
    }),
  } satisfies Record<string, Field<unknown>>;
}

/** Exit code for invalid configuration (sysexits EX_CONFIG). */
export const EXIT_CONFIG = 78;

/**
 * Runs a service's main: a ConfigError prints its message (which names the keys
 * and the fix) and exits 78; any other boot failure is printed and exits 1.
 */
export function runMain(service: string, main: () => Promise<void>): void {
  // Peers started alongside this process may not have reported their ports yet.
  awaitPeerPorts()
    .then(main)
    .catch((err: unknown) => {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(EXIT_CONFIG);
      }
      process.stderr.write(`${service}: failed to start: ${scrub((err as Error)?.stack ?? String(err))}\n`);
      process.exit(1);
    });
}
