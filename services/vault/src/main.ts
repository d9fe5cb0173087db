// Wiring only: config -> clients -> servers -> shutdown.
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, waitForDatabase, watchDatabase } from '@talon/kit/db';
import { initTelemetry } from '@talon/kit/telemetry';
import { Lifecycle } from '@talon/kit/lifecycle';
import { readTls, startGrpcServer } from '@talon/kit/grpc';
import { reportPorts } from '@talon/kit/ports';
import { runMain } from '@talon/kit/service';
import { startInternalHttp } from '@talon/kit/internal-http';
import { initMetrics, METRICS, METRICS_PATH, observe } from '@talon/kit/metrics';
import { VaultAdminServiceService, VaultServiceService } from '@talon/proto';
import { attestationGate } from './attestation/settings.ts';
import { AuditWriter } from './audit.ts';
import { loadVaultConfig, takePassphrase } from './config.ts';
import { listenForEpochChanges } from './epoch-listener.ts';
import { adminHandlers, egressHandlers } from './handlers.ts';
import { queryAudit } from './audit-query.ts';
import { VAULT_SCHEMA, vaultMigrations } from './migrations.ts';
import { VaultStore } from './store.ts';
import { Vault } from './vault.ts';

runMain('vault', async () => {
  const passphrase = takePassphrase();
  const cfg = loadVaultConfig();
  const log = createLogger({ service: 'vault', level: cfg.logLevel });
  const attestation = attestationGate(cfg);
  if (attestation) log.info({ mode: cfg.attestation, gate: attestation.describe() }, 'attestation required before every unseal');
  const telemetry = initTelemetry('vault');
  const metrics = initMetrics('vault', { enabled: cfg.metrics === 'on' });
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);

  const pool = createPool(cfg.databaseUrl, { max: cfg.dbPoolMax, applicationName: 'talon-vault' });
  await waitForDatabase(pool, 30_000, log);
  await migrate(pool, VAULT_SCHEMA, vaultMigrations, log);

  const audit = new AuditWriter(pool);
  const vault = new Vault({
    store: new VaultStore(pool),
    audit,
    log,
    kdf: { memoryKiB: cfg.kdfMemoryKiB, passes: cfg.kdfPasses, parallelism: cfg.kdfParallelism },
    rotateAfter: cfg.rotateAfter,
    attestation,
  });
  if (passphrase) {
    // Unseal before serving, so a vault started with the passphrase is never seen sealed.
    await vault.unseal(passphrase, 'operator-env').catch((err: unknown) => {
      log.error(
        { code: (err as { code?: string }).code, reason: (err as Error).message },
        'TALON_VAULT_PASSPHRASE did not unseal the vault; it stays sealed (run `talon vault unseal`)',
      );
    });
  }

  // Other replicas' epoch changes reach this replica's Watch streams (epoch-listener.ts).
  const listenPool = createPool(cfg.databaseUrl, { max: 1, applicationName: 'talon-vault-listen' });
  const epochListener = listenForEpochChanges({ listenPool, pool, log, onChange: () => vault.stateMayHaveChanged() });

  const grpc = await startGrpcServer({
    name: 'vault',
    host: cfg.grpcHost,
    port: cfg.grpcPort,
    tls: readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey }),
    log,
    services: [
      {
        definition: VaultServiceService,
        handlers: egressHandlers(vault),
        allow: ['egress'],
      },
      {
        definition: VaultAdminServiceService,
        handlers: adminHandlers(vault, audit, (f) => queryAudit(pool, f)),
        allow: ['admin'],
      },
    ],
  });
  // /readyz also says whether the vault is sealed: sealed is still ready (it is unsealed through it).
  const internal = await startInternalHttp({
    service: 'vault',
    host: cfg.internalHost,
    port: cfg.internalPort,
    readiness: grpc.readiness,
    routes: { [METRICS_PATH]: metrics.route },
    facts: () => ({ sealed: vault.sealed }),
  });
  observe(METRICS.vaultSealed, (o) => o(vault.sealed ? 1 : 0));
  reportPorts({ grpc: grpc.port, internal: internal.port });
  grpc.setServing('SERVING');
  // Health follows the database: no work is sent here while it is away.
  const stopWatchingDb = watchDatabase(pool, (up) => grpc.setDependency('database', up));
  life.onShutdown({ name: 'database watch', run: () => stopWatchingDb() });

  let pruneTimer: NodeJS.Timeout | undefined;
  if (cfg.auditRetentionDays > 0) {
    const prune = () =>
      void audit.prune(cfg.auditRetentionDays).then(
        (n) => n > 0 && log.info({ deleted: n, retention_days: cfg.auditRetentionDays }, 'old audit records pruned'),
        (err: unknown) => log.warn({ err }, 'audit pruning failed; will retry'),
      );
    pruneTimer = setInterval(prune, 3_600_000);
    pruneTimer.unref();
  }

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'grpc drain', run: () => grpc.shutdown(5000), timeoutMs: 6000 });
  life.onShutdown({
    name: 'seal (zero keys)',
    run: () =>
      vault.seal('shutdown').then(
        () => undefined,
        () => undefined,
      ),
  });
  life.onShutdown({ name: 'stop audit pruning', run: () => clearInterval(pruneTimer) });
  life.onShutdown({
    name: 'stop epoch listener',
    run: async () => {
      epochListener.stop();
      await listenPool.end();
    },
  });
  life.onShutdown({ name: 'close database pool', run: () => pool.end() });
  // Late: liveness keeps answering while everything before drains.
  life.onShutdown({ name: 'close internal http', run: () => internal.close() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.onShutdown({ name: 'flush metrics', run: () => metrics.shutdown() });
  life.installSignalHandlers();
  log.info(
    { grpc_port: grpc.port, sealed: vault.sealed },
    vault.sealed ? 'vault ready (sealed: unseal with `talon vault unseal`)' : 'vault ready (unsealed)',
  );
});
