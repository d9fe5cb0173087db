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
import { VaultServiceService, type StatusResponse } from '@talon/proto';
import { loadVaultConfig } from './config.ts';
import { VAULT_SCHEMA, vaultMigrations } from './migrations.ts';

runMain('vault', async () => {
  const cfg = loadVaultConfig();
  const log = createLogger({ service: 'vault', level: cfg.logLevel });
  const telemetry = initTelemetry('vault');
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const pool = createPool(cfg.databaseUrl, { max: cfg.dbPoolMax, applicationName: 'talon-vault' });
  await waitForDatabase(pool, 30_000, log);
  await migrate(pool, VAULT_SCHEMA, vaultMigrations, log);
  const status: UnaryHandler<unknown, StatusResponse> = async () => {
    const { rowCount } = await pool.query('select 1 from vault.keyring');
    return { sealed: true, initialized: (rowCount ?? 0) > 0 };
  };
  const grpc = await startGrpcServer({
    name: 'vault',
    host: cfg.grpcHost,
    port: cfg.grpcPort,
    tls: readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey }),
    log,
    services: [
      { definition: VaultServiceService, handlers: { status } as Record<string, UnaryHandler<never, unknown>>, allow: ['egress'] },
    ],
  });
  grpc.setServing('SERVING');
  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'grpc drain', run: () => grpc.shutdown(5000), timeoutMs: 6000 });
  life.onShutdown({ name: 'close database pool', run: () => pool.end() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.installSignalHandlers();
  log.info({ grpc_port: grpc.port }, 'vault ready (sealed)');
});
