// Wiring only: config -> clients -> servers -> shutdown.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:https';
import { ConfigError, ConfigFieldError } from '@talon/kit/config';
import { connectNats, waitForProvisioning, watchNats } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { initTelemetry } from '@talon/kit/telemetry';
import { Lifecycle } from '@talon/kit/lifecycle';
import { listenOn, reportPorts } from '@talon/kit/ports';
import { readTls, startGrpcServer } from '@talon/kit/grpc';
import { runMain } from '@talon/kit/service';
import { startInternalHttp } from '@talon/kit/internal-http';
import { initMetrics, METRICS_PATH } from '@talon/kit/metrics';
import { modelsConfig, providerBaseUrls } from '@talon/kit/models';
import { EgressServiceService } from '@talon/proto';
import { AuditSink } from './audit.ts';
import { edgeHandlers } from './edge-api.ts';
import { ProxyCredentials } from './auth.ts';
import { loadOrCreateCa, LeafIssuer } from './ca.ts';
import { loadEgressConfig } from './config.ts';
import { Tunnels } from './mitm.ts';
import { builtinRules, parseHostPort, parsePolicyDocument, type DestinationRule } from './policy.ts';
import { checkHostName, createProxyHandler, type ProxyDeps } from './proxy.ts';
import { createUpgradeHandler } from './websocket.ts';
import { makeLookup } from './resolve-dns.ts';
import { createScanner } from './scanning.ts';
import { McpGrants } from './mcp-grants.ts';
import { SkillGrants } from './skill-grants.ts';
import { Upstreams } from './upstream.ts';
import { VaultLink } from './vault-client.ts';

runMain('egress', async () => {
  const cfg = loadEgressConfig();
  let rules: DestinationRule[] = builtinRules({
    llmBaseUrls: providerBaseUrls(modelsConfig(cfg)),
    embeddingsBaseUrl: cfg.embeddingsBaseUrl,
    channelUrls: [cfg.telegramApiUrl, cfg.slackApiUrl, cfg.discordApiUrl, cfg.webhookCallbackUrl, cfg.whatsappApiUrl, cfg.mattermostUrl],
    channelGatewayUrls: [cfg.discordGatewayUrl, cfg.slackSocketUrl],
    channelPutUrls: [cfg.matrixHomeserverUrl],
  });
  if (cfg.policyFile) {
    try {
      rules = [...rules, ...parsePolicyDocument(JSON.parse(readFileSync(cfg.policyFile, 'utf8')))];
    } catch (err) {
      throw new ConfigError('egress', [
        new ConfigFieldError(
          'EGRESS_POLICY_FILE',
          `cannot use ${cfg.policyFile}: ${(err as Error).message}`,
          'Fix the file or unset EGRESS_POLICY_FILE',
        ),
      ]);
    }
  }
  const log = createLogger({ service: 'egress', level: cfg.logLevel });
  const telemetry = initTelemetry('egress');
  const metrics = initMetrics('egress', { enabled: cfg.metrics === 'on' });
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });

  const nc = await connectNats({ servers: cfg.natsUrl, user: 'egress', seedFile: cfg.natsSeedFile, log });

  // Started before `talon provision` (a cluster): wait for the streams rather than crash-loop.

  await waitForProvisioning(nc, 'egress', log);
  const audit = new AuditSink(nc, log);
  const ca = await loadOrCreateCa(cfg.caDir);
  if (ca.created)
    log.info(
      { dir: cfg.caDir },
      'created the TLS interception CA (mitmproxy layout); clients that use CONNECT must trust mitmproxy-ca-cert.pem',
    );
  let scanner;
  try {
    scanner = createScanner({ maxScanBytes: Math.max(16 * 1024 * 1024, cfg.maxRequestBytes), disabledRules: cfg.scanDisabledRules });
  } catch (err) {
    throw new ConfigError('egress', [
      new ConfigFieldError(
        'EGRESS_SCAN_DISABLE_RULES',
        (err as Error).message,
        'List only rule ids from services/egress/src/scan/rules.ts',
      ),
    ]);
  }
  const vault = new VaultLink(cfg.vaultAddr, tls, log, { cacheMs: cfg.secretCacheMs, retryMaxMs: cfg.vaultRetryMaxMs });
  vault.onIndex = (fps) => scanner.setFingerprints(fps);
  vault.start();
  const upstreams = new Upstreams({
    connectTimeoutMs: cfg.connectTimeoutMs,
    ca: cfg.upstreamCaFile ? readFileSync(cfg.upstreamCaFile) : undefined,
    upstreamProxy: cfg.upstreamProxy,
  });
  const credentials = new ProxyCredentials(cfg.credentialsFile);
  const rulesFor = () => rules;
  const skillGrants = new SkillGrants(nc, log);
  await skillGrants.start();
  const mcpGrants = new McpGrants(nc, log);
  await mcpGrants.start();
  const proxyDeps: ProxyDeps = {
    rules: rulesFor,
    skillGrant: (p) => skillGrants.grantFor(p),
    allowPrivate: cfg.allowPrivate.map((e) => parseHostPort(e)!),
    lookup: makeLookup(cfg.dnsServers),
    upstreams,
    audit,
    log,
    credentials,
    vault,
    scanner,
    maxRequestBytes: cfg.maxRequestBytes,
    headersTimeoutMs: cfg.headersTimeoutMs,
    bodyTimeoutMs: cfg.bodyTimeoutMs,
    skillDelegates: ['sandbox'],
    mcpGrant: (p) => mcpGrants.grantFor(p),
    mcpDelegates: ['orchestrator'],
  };
  const handle = createProxyHandler(proxyDeps);
  // WebSockets: the same steps for the upgrade, then frames scanned out and redacted in.
  const onUpgrade = createUpgradeHandler(proxyDeps);
  const allowPrivate = cfg.allowPrivate.map((e) => parseHostPort(e)!);
  const tunnels = new Tunnels({
    issuer: new LeafIssuer(ca),
    credentials,
    rules: rulesFor,
    handle,
    checkHost: (rawHost, host, port) => checkHostName({ scanner, allowPrivate }, rawHost, host, port),
    scanner,
    audit,
    log,
    maxTunnels: cfg.maxTunnels,
  });

  // Workloads present their certificate; tools without one send a proxy credential instead.
  const proxy = createServer(
    { ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: false },
    (req, res) => void handle(req, res),
  );
  proxy.on('connect', tunnels.onConnect);
  proxy.on('upgrade', onUpgrade);
  proxy.keepAliveTimeout = 60_000;
  const servers = [proxy];
  const proxyPort = await listenOn(proxy, { service: 'egress', key: 'EGRESS_PROXY_PORT', host: cfg.proxyHost, port: cfg.proxyPort });
  let plainPort: number | undefined;
  if (cfg.plainProxyPort > 0) {
    const plain = createHttpServer((req, res) => void handle(req, res));
    plain.on('connect', tunnels.onConnect);
    plain.on('upgrade', onUpgrade);
    plainPort = await listenOn(plain, { service: 'egress', key: 'EGRESS_PLAIN_PROXY_PORT', host: cfg.proxyHost, port: cfg.plainProxyPort });
    servers.push(plain as unknown as typeof proxy);
  }

  const grpc = await startGrpcServer({
    name: 'egress',
    host: cfg.grpcHost,
    port: cfg.grpcPort,
    tls,
    log,
    services: [
      {
        definition: EgressServiceService,
        handlers: edgeHandlers(vault, scanner),
        // The orchestrator may only redact text (tool results and answers before they are stored).
        allow: (peer, method) => peer === 'gateway' || (peer === 'orchestrator' && method === 'redactText'),
      },
    ],
  });
  const internal = await startInternalHttp({
    service: 'egress',
    host: cfg.internalHost,
    port: cfg.internalPort,
    readiness: grpc.readiness,
    routes: { [METRICS_PATH]: metrics.route },
  });
  reportPorts({ proxy: proxyPort, grpc: grpc.port, internal: internal.port, ...(plainPort ? { plainProxy: plainPort } : {}) });
  grpc.setServing('SERVING');
  // Health follows the NATS connection: no work is sent here while it is down.
  watchNats(nc, (up) => grpc.setDependency('nats', up));

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({
    name: 'stop accepting proxy requests and finish in-flight',
    run: () =>
      Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeIdleConnections();
            }),
        ),
      ).then(() => undefined),
    timeoutMs: 10_000,
  });
  life.onShutdown({ name: 'close tunnels', run: () => tunnels.close() });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(2000) });
  life.onShutdown({ name: 'flush audit', run: () => audit.flush(3000), timeoutMs: 3500 });
  life.onShutdown({
    name: 'drain nats',
    run: async () => {
      skillGrants.stop();
      mcpGrants.stop();
      await nc.drain();
    },
  });
  life.onShutdown({
    name: 'close upstreams and vault link',
    run: async () => {
      vault.close();
      await upstreams.close();
    },
  });
  // Late: liveness keeps answering while everything before drains.
  life.onShutdown({ name: 'close internal http', run: () => internal.close() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.onShutdown({ name: 'flush metrics', run: () => metrics.shutdown() });
  life.installSignalHandlers();
  log.info(
    {
      proxy: `https://${cfg.proxyHost}:${proxyPort}`,
      plain: plainPort,
      upstream: upstreams.mode,
      rules: rules.length,
      allow_private: cfg.allowPrivate,
    },
    'egress ready',
  );
});
