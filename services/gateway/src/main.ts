// Wiring only: config -> clients -> servers -> shutdown.
import { jetstream } from '@nats-io/jetstream';
import { connectNats, createLogger, initTelemetry, Lifecycle, readTls, runMain, startGrpcServer } from '@talon/kit';
import { TokenStore } from './auth.ts';
import { loadGatewayConfig } from './config.ts';
import { GatewayHttp } from './http.ts';
import { ReplyRouter } from './replies.ts';

runMain('gateway', async () => {
  const cfg = loadGatewayConfig();
  const log = createLogger({ service: 'gateway', level: cfg.logLevel });
  const telemetry = initTelemetry('gateway');
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });

  const nc = await connectNats({ servers: cfg.natsUrl, user: 'gateway', seedFile: cfg.natsSeedFile, log });
  const tokens = new TokenStore(nc);
  await tokens.open();
  const router = new ReplyRouter(nc, log);
  router.start();
  const http = new GatewayHttp({
    tokens,
    router,
    js: jetstream(nc),
    log,
    maxBodyBytes: cfg.maxBodyBytes,
    turnTimeoutMs: cfg.turnTimeoutMs,
    maxMessages: cfg.maxMessages,
  });
  await new Promise<void>((resolve, reject) => {
    http.server.once('error', reject);
    http.server.listen(cfg.httpPort, cfg.httpHost, () => resolve());
  });
  const grpc = await startGrpcServer({ name: 'gateway', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  grpc.setServing('SERVING');

  life.onShutdown({
    name: 'health not serving',
    run: () => {
      grpc.setServing('NOT_SERVING');
      http.startDraining();
    },
  });
  life.onShutdown({
    name: 'stop accepting connections',
    run: () => {
      http.server.close();
      http.server.closeIdleConnections();
    },
  });
  life.onShutdown({
    name: 'finish in-flight requests',
    run: () => http.inFlight.idle(),
    timeoutMs: Math.max(1000, cfg.shutdownTimeoutMs - 4000),
  });
  life.onShutdown({
    name: 'drain nats',
    run: async () => {
      router.stop();
      await nc.drain();
    },
  });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(1000) });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.installSignalHandlers();
  log.info({ url: `http://${cfg.httpHost}:${cfg.httpPort}`, instance: router.instance }, 'gateway ready');
});
