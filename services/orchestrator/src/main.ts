// Wiring only: config -> clients -> servers -> shutdown.
import { connectNats, waitForProvisioning, watchNats } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { EgressClient } from '@talon/kit/egress';
import { InFlight, Lifecycle } from '@talon/kit/lifecycle';
import { initTelemetry } from '@talon/kit/telemetry';
import { readTls, startGrpcServer } from '@talon/kit/grpc';
import { reportPorts } from '@talon/kit/ports';
import { runMain } from '@talon/kit/service';
import { jetstream } from '@nats-io/jetstream';
import { CONSUMERS, STREAMS, SUBJECTS } from '@talon/kit/subjects';
import { startInternalHttp } from '@talon/kit/internal-http';
import { initMetrics, METRICS_PATH, observeConsumer } from '@talon/kit/metrics';
import { remoteEmbedder } from '@talon/embed';
import { modelsConfig, providerBaseUrls } from '@talon/kit/models';
import { ApprovalBook } from './approvals.ts';
import { loadOrchestratorConfig } from './config.ts';
import { RemoteEmbeddingWorker } from './embed-worker.ts';
import { anthropicFormat } from './llm/anthropic.ts';
import { LlmClient } from './llm/client.ts';
import { openaiFormat } from './llm/openai.ts';
import { AgentBook } from './agents.ts';
import { ModelRouter } from './llm/router.ts';
import { ConversationResponder } from './conversations.ts';
import { memoryClient } from './memory.ts';
import { McpCatalog } from './mcp/catalog.ts';
import { McpConnector } from './mcp/session.ts';
import { McpToolsResponder } from './mcp/tools-responder.ts';
import { EgressRedactor } from './redaction.ts';
import { Recall } from './recall.ts';
import { RoutineRunner } from './routines.ts';
import { checklistText, documentEventBody } from './routine-events.ts';
import { TurnResumer } from './resume.ts';
import { SkillCatalog } from './skills/catalog.ts';
import { SkillInvoker } from './skills/invoke.ts';
import { Slots } from './slots.ts';
import { ToolAudit } from './tool-record.ts';
import { memoryTools } from './tools/memory-tools.ts';
import type { Tool } from './tools/registry.ts';
import { TurnEngine } from './turn-engine.ts';
import { TurnStore } from './turn-state.ts';
import { InboundWorker } from './worker.ts';

runMain('orchestrator', async () => {
  const cfg = loadOrchestratorConfig();
  const log = createLogger({ service: 'orchestrator', level: cfg.logLevel });
  const telemetry = initTelemetry('orchestrator');
  const metrics = initMetrics('orchestrator', { enabled: cfg.metrics === 'on' });
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });

  const egress = new EgressClient({ proxyUrl: cfg.egressUrl, tls });
  const models = modelsConfig(cfg);
  const llm = new ModelRouter(
    models,
    (t) =>
      new LlmClient({
        egress,
        format: t.format === 'anthropic' ? anthropicFormat : openaiFormat,
        baseUrl: t.baseUrl,
        model: t.model,
        label: t.label,
        apiKeySecret: t.keySecret,
        timeoutMs: cfg.llmTimeoutMs,
      }),
    log,
  );
  const memory = memoryClient(cfg.memoryAddr, tls);
  const redactor = new EgressRedactor(cfg.egressAddr, tls);
  // A remote embedding model is called here, through egress; the local one runs inside memory.
  const embedder = remoteEmbedder(cfg, egress);
  const recall = new Recall({ memory, embedder, log, minSimilarity: cfg.recallMinSimilarity });
  const tools: Tool[] = cfg.memoryTools ? memoryTools({ memory, recall, maxNoteChars: cfg.memoryNoteMaxChars, maxResults: 10 }) : [];
  const embedWorker = embedder
    ? new RemoteEmbeddingWorker({ memory, embedder, log, batch: cfg.embeddingsBatch, idleMs: cfg.reembedIdleMs })
    : undefined;
  const nc = await connectNats({ servers: cfg.natsUrl, user: 'orchestrator', seedFile: cfg.natsSeedFile, log });
  // Started before `talon provision` (a cluster): wait for the streams rather than crash-loop.
  await waitForProvisioning(nc, 'orchestrator', log);

  const catalog = cfg.skills ? new SkillCatalog(nc, { log, ttlMs: cfg.skillCatalogTtlMs }) : undefined;
  await catalog?.start();
  // MCP servers' tools: every byte through egress as mcp:<server> (mcp/egress-fetch.ts).
  const mcpConnector = new McpConnector({ egress, timeoutMs: cfg.mcpTimeoutMs });
  const mcpCatalog = new McpCatalog(nc, { log, connector: mcpConnector, ttlMs: cfg.mcpToolsTtlMs });
  await mcpCatalog.start();
  const mcpTools = new McpToolsResponder({ nc, log, server: (name) => mcpCatalog.server(name), connector: mcpConnector });
  const approvals = new ApprovalBook(nc);
  const turns = new TurnStore(nc);
  await approvals.start();
  await turns.start();
  const engine = new TurnEngine({
    nc,
    log,
    llm,
    memory,
    systemPrompt: cfg.systemPrompt,
    historyTurns: cfg.historyTurns,
    recordTurns: cfg.recordTurns,
    recall,
    recallLimit: cfg.recallLimit,
    contextBudgetTokens: cfg.contextBudgetTokens,
    recallBudgetTokens: cfg.recallBudgetTokens,
    tools,
    ...(catalog ? { skills: { catalog, invoker: new SkillInvoker(nc) } } : {}),
    mcp: { catalog: mcpCatalog, connector: mcpConnector },
    // Agent profiles (talon agents): read for every turn, cached briefly.
    agents: new AgentBook(nc, { ttlMs: 2000, log }),
    parking: { approvals, turns, approvalTtlMs: cfg.approvalTimeoutMs },
    audit: new ToolAudit(nc, log),
    toolLimits: {
      maxSteps: cfg.toolMaxSteps,
      timeoutMs: cfg.toolLoopTimeoutMs,
      toolTimeoutMs: cfg.toolTimeoutMs,
      maxCallsPerStep: cfg.toolMaxCallsPerStep,
      maxToolOutputChars: cfg.toolOutputMaxChars,
    },
    ...(embedWorker ? { onMemoryWritten: () => embedWorker.nudge() } : {}),
    redactor,
    onReplied: (inbound, msg) => routines.recordOutcome(inbound, msg),
  });
  // New turns and continued (parked) turns share the replica's concurrency and its shutdown wait.
  const slots = new Slots(cfg.concurrency);
  const inFlight = new InFlight();
  const resumer = new TurnResumer({
    nc,
    log,
    turns,
    approvals,
    engine,
    slots,
    inFlight,
    leaseMs: cfg.turnLeaseMs,
    sweepMs: cfg.turnSweepMs,
    maxAttempts: cfg.maxDeliver,
  });
  const worker = new InboundWorker({
    nc,
    log,
    engine,
    turns,
    onParkedAgain: (key) => resumer.poke(key),
    owner: resumer.owner,
    leaseMs: cfg.turnLeaseMs,
    ackWaitMs: cfg.ackWaitMs,
    maxDeliver: cfg.maxDeliver,
    concurrency: cfg.concurrency,
    slots,
    inFlight,
  });
  // Routines: every replica records the outcomes of the routine turns it runs; the scheduler runs unless disabled.
  const routines = new RoutineRunner({
    nc,
    log,
    owner: resumer.owner,
    leaseMs: cfg.routineLeaseMs,
    graceMs: cfg.routineGraceMs,
    redactor,
    // A heartbeat's checklist: the chunks of the user's document of that key that memory search finds for it.
    checklist: async (userId, key) => checklistText(await recall.search(userId, key, { limit: 20 }), key),
  });
  await routines.open();
  await worker.start();
  resumer.start();
  if (cfg.routines) await routines.start();
  embedWorker?.start();
  const conversations = new ConversationResponder({
    nc,
    memory,
    log,
    // An imported memory document fires the routines listening with --on document (TALON_EVENTS; no content).
    onDocument: async (userId, key, title) => {
      await jetstream(nc).publish(SUBJECTS.events('document'), documentEventBody(userId, key, title), { timeout: 5000 });
    },
  });
  conversations.start();
  mcpTools.start();
  const grpc = await startGrpcServer({ name: 'orchestrator', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  const internal = await startInternalHttp({
    service: 'orchestrator',
    host: cfg.internalHost,
    port: cfg.internalPort,
    readiness: grpc.readiness,
    routes: { [METRICS_PATH]: metrics.route },
  });
  observeConsumer(STREAMS.inbound.name, CONSUMERS.orchestratorInbound, () => worker.consumerInfo());
  reportPorts({ grpc: grpc.port, internal: internal.port });
  grpc.setServing('SERVING');
  // Health follows the NATS connection: no work is sent here while it is down.
  watchNats(nc, (up) => grpc.setDependency('nats', up));

  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'stop pulling inbound messages', run: () => worker.stopIntake() });
  life.onShutdown({
    name: 'stop continuing parked turns',
    run: () => {
      resumer.stop();
      routines.stop();
      catalog?.stop();
      mcpCatalog.stop();
    },
  });
  life.onShutdown({
    name: 'finish in-flight turns',
    run: () => inFlight.idle(),
    timeoutMs: Math.max(1000, cfg.shutdownTimeoutMs - 4000),
  });
  life.onShutdown({ name: 'stop background embedding', run: () => embedWorker?.stop(1500), timeoutMs: 2500 });
  life.onShutdown({ name: 'stop answering conversation requests', run: () => conversations.stop(), timeoutMs: 2000 });
  life.onShutdown({ name: 'stop answering MCP tools requests', run: () => mcpTools.stop(), timeoutMs: 2000 });
  life.onShutdown({ name: 'drain nats', run: () => nc.drain() });
  life.onShutdown({
    name: 'close clients',
    run: async () => {
      memory.close();
      redactor.close();
      await egress.close();
    },
  });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(1000) });
  // Late: liveness keeps answering while everything before drains.
  life.onShutdown({ name: 'close internal http', run: () => internal.close() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.onShutdown({ name: 'flush metrics', run: () => metrics.shutdown() });
  life.installSignalHandlers();
  log.info(
    {
      models: models.models.map((m) => `${m.name}: ${m.targets.map((t) => `${t.label}/${t.model}`).join(' > ')}`),
      models_from: models.source,
      llm: providerBaseUrls(models),
      egress: cfg.egressUrl,
      concurrency: cfg.concurrency,
      embeddings: `${cfg.embeddingsProvider}:${cfg.embeddingsModel}/${cfg.embeddingsDim}`,
      tools: tools.map((t) => t.name),
      skills: cfg.skills,
    },
    'orchestrator ready',
  );
});
