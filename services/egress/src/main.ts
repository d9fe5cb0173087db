// Wiring only: config -> clients -> servers -> shutdown.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import {
  connectNats,
  createLogger,
  initTelemetry,
  Lifecycle,
  readTls,
  runMain,
  startGrpcServer,
  ConfigError,
  ConfigFieldError,
} from '@talon/kit';
import { AuditSink } from './audit.ts';
import { loadEgressConfig } from './config.ts';
import { builtinRules, parseHostPort, parsePolicyDocument, type DestinationRule } from './policy.ts';
import { createProxyHandler } from './proxy.ts';
import { systemLookup } from './resolve.ts';
import { UpstreamPools } from './upstream.ts';

runMain('egress', async () => {
  const cfg = loadEgressConfig();
  let rules: DestinationRule[] = builtinRules({ llmBaseUrl: cfg.llmBaseUrl });
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
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });

  const nc = await connectNats({ servers: cfg.natsUrl, user: 'egress', seedFile: cfg.natsSeedFile, log });
  const audit = new AuditSink(nc, log);
  const pools = new UpstreamPools({
    connectTimeoutMs: cfg.connectTimeoutMs,
    ca: cfg.upstreamCaFile ? readFileSync(cfg.upstreamCaFile) : undefined,
  });
  const handler = createProxyHandler({
    rules: () => rules,
    allowPrivate: cfg.allowPrivate.map((e) => parseHostPort(e)!),
    lookup: systemLookup,
    pools,
    audit,
    log,
    maxRequestBytes: cfg.maxRequestBytes,
    headersTimeoutMs: cfg.headersTimeoutMs,
    bodyTimeoutMs: cfg.bodyTimeoutMs,
  });

  // Callers authenticate with their workload certificate; no certificate, no connection.
  const proxy = createServer({ ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    void handler(req, res);
  });
  proxy.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen(cfg.proxyPort, cfg.proxyHost, () => resolve());
  });

  const grpc = await startGrpcServer({ name: 'egress', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  grpc.setServing('SERVING');

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({
    name: 'stop accepting proxy requests and finish in-flight',
    run: () =>
      new Promise<void>((resolve) => {
        proxy.close(() => resolve());
        proxy.closeIdleConnections();
      }),
    timeoutMs: 10_000,
  });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(2000) });
  life.onShutdown({ name: 'flush audit', run: () => audit.flush(3000), timeoutMs: 3500 });
  life.onShutdown({ name: 'drain nats', run: () => nc.drain() });
  life.onShutdown({ name: 'close upstream pools', run: () => pools.close() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.installSignalHandlers();
  log.info({ proxy: `https://${cfg.proxyHost}:${cfg.proxyPort}`, rules: rules.length, allow_private: cfg.allowPrivate }, 'egress ready');
});
