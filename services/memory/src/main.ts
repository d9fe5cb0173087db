// Wiring only: config -> clients -> servers -> shutdown.
import {
  createLogger,
  createPool,
  initTelemetry,
  Lifecycle,
  migrate,
  readTls,
  runMain,
  startGrpcServer,
  waitForDatabase,
  type UnaryHandler,
} from '@talon/kit';
import { MemoryServiceService } from '@talon/proto';
import { loadMemoryConfig } from './config.ts';
import { memoryHandlers } from './handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from './migrations.ts';
import { MemoryStore } from './store.ts';

runMain('memory', async () => {
  const cfg = loadMemoryConfig();
  const log = createLogger({ service: 'memory', level: cfg.logLevel });
  const telemetry = initTelemetry('memory');
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);

  const pool = createPool(cfg.databaseUrl, { max: cfg.dbPoolMax, applicationName: 'talon-memory' });
  await waitForDatabase(pool, 30_000, log);
  await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log);

  const handlers = memoryHandlers(new MemoryStore(pool), { maxTurnBytes: cfg.maxTurnBytes });
  const grpc = await startGrpcServer({
    name: 'memory',
    host: cfg.grpcHost,
    port: cfg.grpcPort,
    tls: readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey }),
    log,
    services: [
      {
        definition: MemoryServiceService,
        handlers: handlers as unknown as Record<string, UnaryHandler<never, unknown>>,
        allow: ['orchestrator'],
      },
    ],
  });
  grpc.setServing('SERVING');

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'grpc drain', run: () => grpc.shutdown(5000), timeoutMs: 6000 });
  life.onShutdown({ name: 'close database pool', run: () => pool.end() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.installSignalHandlers();
  log.info({ grpc_port: grpc.port }, 'memory ready');
});
