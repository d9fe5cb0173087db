// Wiring only: config -> clients -> servers -> shutdown.
import {
  connectNats,
  createLogger,
  InFlight,
  initTelemetry,
  Lifecycle,
  readTls,
  runMain,
  SANDBOX_QUEUE,
  startGrpcServer,
} from '@talon/kit';
import { loadSandboxConfig } from './config.ts';
import { handleInvocation, NoSkillsInstalled } from './invoke.ts';

runMain('sandbox', async () => {
  const cfg = loadSandboxConfig();
  const log = createLogger({ service: 'sandbox', level: cfg.logLevel });
  const telemetry = initTelemetry('sandbox');
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });
  const nc = await connectNats({ servers: cfg.natsUrl, user: 'sandbox', seedFile: cfg.natsSeedFile, log });
  const runner = new NoSkillsInstalled();
  const inFlight = new InFlight();
  // Queue group: any number of sandbox nodes share the invocations.
  const sub = nc.subscribe('talon.skill.invoke.>', { queue: SANDBOX_QUEUE });
  void (async () => {
    for await (const m of sub) {
      void inFlight.track(async () => {
        const out = await handleInvocation(m.data, runner);
        m.respond(out);
      });
    }
  })();
  const grpc = await startGrpcServer({ name: 'sandbox', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  grpc.setServing('SERVING');
  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'stop taking invocations', run: () => sub.drain() });
  life.onShutdown({ name: 'finish in-flight invocations', run: () => inFlight.idle() });
  life.onShutdown({ name: 'drain nats', run: () => nc.drain() });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(1000) });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.installSignalHandlers();
  log.info({ concurrency: cfg.concurrency }, 'sandbox ready');
});
