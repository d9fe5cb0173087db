// Wiring only: config -> clients -> servers -> shutdown.
import { connectNats, createLogger, EgressClient, initTelemetry, Lifecycle, readTls, runMain, startGrpcServer } from '@talon/kit';
import { loadOrchestratorConfig } from './config.ts';
import { anthropicFormat } from './llm/anthropic.ts';
import { LlmClient } from './llm/client.ts';
import { openaiFormat } from './llm/openai.ts';
import { memoryClient } from './memory.ts';
import { InboundWorker } from './worker.ts';

runMain('orchestrator', async () => {
  const cfg = loadOrchestratorConfig();
  const log = createLogger({ service: 'orchestrator', level: cfg.logLevel });
  const telemetry = initTelemetry('orchestrator');
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });

  const egress = new EgressClient({ proxyUrl: cfg.egressUrl, tls });
  const llm = new LlmClient({
    egress,
    format: cfg.llmProvider === 'anthropic' ? anthropicFormat : openaiFormat,
    baseUrl: cfg.llmBaseUrl,
    model: cfg.llmModel,
    apiKeySecret: cfg.llmKeySecret === 'none' ? undefined : cfg.llmKeySecret,
    timeoutMs: cfg.llmTimeoutMs,
  });
  const memory = memoryClient(cfg.memoryAddr, tls);
  const nc = await connectNats({ servers: cfg.natsUrl, user: 'orchestrator', seedFile: cfg.natsSeedFile, log });

  const worker = new InboundWorker({
    nc,
    log,
    llm,
    memory,
    systemPrompt: cfg.systemPrompt,
    ackWaitMs: cfg.ackWaitMs,
    maxDeliver: cfg.maxDeliver,
    concurrency: cfg.concurrency,
    historyTurns: cfg.historyTurns,
    recordTurns: cfg.recordTurns,
  });
  await worker.start();
  const grpc = await startGrpcServer({ name: 'orchestrator', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  grpc.setServing('SERVING');

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'stop pulling inbound messages', run: () => worker.stopIntake() });
  life.onShutdown({
    name: 'finish in-flight turns',
    run: () => worker.inFlight.idle(),
    timeoutMs: Math.max(1000, cfg.shutdownTimeoutMs - 4000),
  });
  life.onShutdown({ name: 'drain nats', run: () => nc.drain() });
  life.onShutdown({
    name: 'close clients',
    run: async () => {
      memory.close();
      await egress.close();
    },
  });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(1000) });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.installSignalHandlers();
  log.info(
    { provider: cfg.llmProvider, model: cfg.llmModel, llm: cfg.llmBaseUrl, egress: cfg.egressUrl, concurrency: cfg.concurrency },
    'orchestrator ready',
  );
});
