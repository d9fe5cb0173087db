// Wiring only: config -> clients -> servers -> shutdown.
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, waitForDatabase, watchDatabase } from '@talon/kit/db';
import { initTelemetry } from '@talon/kit/telemetry';
import { Lifecycle } from '@talon/kit/lifecycle';
import { readTls, startGrpcServer } from '@talon/kit/grpc';
import { reportPorts } from '@talon/kit/ports';
import { runMain } from '@talon/kit/service';
import { startInternalHttp } from '@talon/kit/internal-http';
import { initMetrics, METRICS_PATH } from '@talon/kit/metrics';
import { localEmbedder } from '@talon/embed';
import { MemoryServiceService } from '@talon/proto';
import { BackgroundUpkeep, SEARCH_WAITS_FOR_INDEXING_MS } from './background.ts';
import { loadMemoryConfig } from './config.ts';
import { MEMORY_CALLERS, memoryHandlers } from './handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from './migrations.ts';
import { MemoryStore, searchSessionSetup } from './store.ts';

runMain('memory', async () => {
  const cfg = loadMemoryConfig();
  const log = createLogger({ service: 'memory', level: cfg.logLevel });
  const telemetry = initTelemetry('memory');
  const metrics = initMetrics('memory', { enabled: cfg.metrics === 'on' });
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);

  const pool = createPool(cfg.databaseUrl, {
    max: cfg.dbPoolMax,
    applicationName: 'talon-memory',
    onConnect: searchSessionSetup({ efSearch: cfg.hnswEfSearch }, log),
  });
  await waitForDatabase(pool, 30_000, log);
  await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log);

  const store = new MemoryStore(pool, {
    model: cfg.embeddingsModel,
    dim: cfg.embeddingsDim,
    embedder: localEmbedder(cfg),
    chunk: { size: cfg.chunkChars, overlap: cfg.chunkOverlapChars },
    candidates: cfg.searchCandidates,
    rrfK: cfg.rrfK,
    maxTermFreq: cfg.textMaxTermFreq,
  });
  const hnsw = { m: cfg.hnswM, efConstruction: cfg.hnswEfConstruction };
  // Re-embedding and index builds run behind the serving API, never before it;
  // new turns are indexed right after they are stored, off the turn's latency.
  const upkeep = new BackgroundUpkeep({
    store,
    log,
    batch: cfg.reembedBatch,
    idleMs: cfg.reembedIdleMs,
    hnsw: { ...hnsw, buildMemoryMb: cfg.hnswBuildMemoryMb },
  });
  const handlers = memoryHandlers(store, {
    onTurnsStored: (conversation) => upkeep.indexSoon(conversation),
    beforeSearch: (s) => upkeep.indexedFor(s.userId, s.exclude, SEARCH_WAITS_FOR_INDEXING_MS),
    maxTurnBytes: cfg.maxTurnBytes,
    maxDocumentBytes: cfg.maxDocumentBytes,
    searchMaxLimit: cfg.searchMaxLimit,
    hnsw,
    log,
  });
  const grpc = await startGrpcServer({
    name: 'memory',
    host: cfg.grpcHost,
    port: cfg.grpcPort,
    tls: readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey }),
    log,
    services: [{ definition: MemoryServiceService, handlers, allow: MEMORY_CALLERS }],
  });
  const internal = await startInternalHttp({
    service: 'memory',
    host: cfg.internalHost,
    port: cfg.internalPort,
    readiness: grpc.readiness,
    routes: { [METRICS_PATH]: metrics.route },
  });
  reportPorts({ grpc: grpc.port, internal: internal.port });
  grpc.setServing('SERVING');
  // Health follows the database: no work is sent here while it is away.
  const stopWatchingDb = watchDatabase(pool, (up) => grpc.setDependency('database', up));
  life.onShutdown({ name: 'database watch', run: () => stopWatchingDb() });

  upkeep.start();

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'grpc drain', run: () => grpc.shutdown(5000), timeoutMs: 6000 });
  life.onShutdown({ name: 'stop background upkeep', run: () => upkeep.stop(), timeoutMs: 2000 });
  life.onShutdown({ name: 'close database pool', run: () => pool.end() });
  // Late: liveness keeps answering while everything before drains.
  life.onShutdown({ name: 'close internal http', run: () => internal.close() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.onShutdown({ name: 'flush metrics', run: () => metrics.shutdown() });
  life.installSignalHandlers();
  log.info(
    { grpc_port: grpc.port, embeddings: `${cfg.embeddingsModel}/${cfg.embeddingsDim}`, local_embedder: cfg.embeddingsProvider === 'local' },
    'memory ready',
  );
});
