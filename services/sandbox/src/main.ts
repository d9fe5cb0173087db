// Wiring only: config -> clients -> servers -> shutdown.
import { hostname } from 'node:os';
import { connectNats, waitForProvisioning, watchNats } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { EgressClient } from '@talon/kit/egress';
import { InFlight, Lifecycle } from '@talon/kit/lifecycle';
import { extractHeaders, initTelemetry } from '@talon/kit/telemetry';
import { readTls, startGrpcServer } from '@talon/kit/grpc';
import { reportPorts } from '@talon/kit/ports';
import { runMain } from '@talon/kit/service';
import { startInternalHttp } from '@talon/kit/internal-http';
import { initMetrics, METRICS, METRICS_PATH, observe } from '@talon/kit/metrics';
import { SANDBOX_QUEUE } from '@talon/kit/subjects';
import { SKILL_HOST_WAIT_MS } from '@talon/kit/contracts';
import { SkillInvocationAudit } from '@talon/proto';
import { loadSandboxConfig } from './config.ts';
import { HostPool } from './host/pool.ts';
import { HttpBridge } from './http-bridge.ts';
import { INVOKE_PREFIX, Invoker } from './invoke.ts';
import { SkillReader } from './registry/reader.ts';

runMain('sandbox', async () => {
  const cfg = loadSandboxConfig();
  const log = createLogger({ service: 'sandbox', level: cfg.logLevel });
  const telemetry = initTelemetry('sandbox');
  const metrics = initMetrics('sandbox', { enabled: cfg.metrics === 'on' });
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });
  const nc = await connectNats({ servers: cfg.natsUrl, user: 'sandbox', seedFile: cfg.natsSeedFile, log });
  // Started before `talon provision` (a cluster): wait for the streams rather than crash-loop.
  await waitForProvisioning(nc, 'sandbox', log);

  const caps = { memoryCapMb: cfg.maxMemoryMb, maxModuleBytes: cfg.maxModuleBytes, maxTimeoutMs: cfg.maxTimeoutMs };
  const reader = new SkillReader(nc, {
    caps,
    cacheDir: cfg.cacheDir,
    memoryCacheBytes: cfg.cacheMb * 1024 * 1024,
    recordTtlMs: 30_000,
    log,
  });
  await reader.start();
  // The node's only network client besides NATS: the egress proxy, under the node's own identity.
  const egress = new EgressClient({ proxyUrl: cfg.egressUrl, tls, connections: Math.max(4, cfg.concurrency * 2) });
  const bridge = new HttpBridge(egress, {
    maxCallsPerInvocation: cfg.httpCallsPerInvocation,
    callsPerSecondPerSkill: cfg.httpRatePerSkill,
    burstPerSkill: cfg.httpRatePerSkill * 2,
    maxRequestBytes: cfg.maxHttpRequestBytes,
    maxResponseBytes: cfg.maxHttpResponseBytes,
    maxHeaders: 64,
    maxUrlLength: 8192,
  });
  const pool = new HostPool({
    size: cfg.concurrency,
    perSkill: cfg.perSkillConcurrency || Math.max(1, Math.floor(cfg.concurrency / 2)),
    queueLimit: cfg.queueLimit,
    heapMb: cfg.hostHeapMb,
    rssLimitBytes: cfg.hostMaxRssMb * 1024 * 1024,
    warmTimeoutMs: Math.min(cfg.maxTimeoutMs, 10_000),
    idleMs: cfg.hostIdleMs,
    minIdle: cfg.hostMinIdle,
    log,
  });
  // Hosts start with the first calls; only a warm minimum (SANDBOX_HOST_MIN_IDLE) is awaited here.
  await pool.start();
  const node = `${hostname()}:${process.pid}`;
  const invoker = new Invoker({
    skills: reader,
    pool,
    bridge,
    limits: { maxInputBytes: cfg.maxInputBytes, maxOutputBytes: cfg.maxOutputBytes, maxLogLines: 20 },
    log,
    node,
    audit: (a) => nc.publish('talon.audit.sandbox.invocation', SkillInvocationAudit.encode(a).finish()),
  });

  const inFlight = new InFlight();
  // Queue group: any number of sandbox nodes share the invocations. A callback (not an
  // async iterator) hands each request to the invoker without extra scheduling hops.
  const sub = nc.subscribe(`${INVOKE_PREFIX}>`, {
    queue: SANDBOX_QUEUE,
    callback: (_err, m) => {
      void inFlight.track(async () => {
        m.respond(await invoker.handle(m.subject, m.data, extractHeaders(m.headers)));
      });
    },
  });
  const grpc = await startGrpcServer({ name: 'sandbox', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  const internal = await startInternalHttp({
    service: 'sandbox',
    host: cfg.internalHost,
    port: cfg.internalPort,
    readiness: grpc.readiness,
    routes: { [METRICS_PATH]: metrics.route },
  });
  observe(METRICS.sandboxHosts, (o) => o(pool.size));
  reportPorts({ grpc: grpc.port, internal: internal.port });
  grpc.setServing('SERVING');
  // Health follows the NATS connection: no work is sent here while it is down.
  watchNats(nc, (up) => grpc.setDependency('nats', up));
  life.onShutdown({ name: 'health not serving', run: () => grpc.setServing('NOT_SERVING') });
  life.onShutdown({ name: 'stop taking invocations', run: () => sub.drain() });
  life.onShutdown({
    name: 'finish in-flight invocations',
    run: () => inFlight.idle(),
    // A call may still be waiting for its host: the longest one runs its wait and its timeout.
    timeoutMs: Math.min(cfg.maxTimeoutMs + SKILL_HOST_WAIT_MS + 1000, 30_000),
  });
  life.onShutdown({ name: 'stop plugin hosts', run: () => pool.close() });
  life.onShutdown({ name: 'stop registry updates', run: () => reader.stop() });
  life.onShutdown({ name: 'drain nats', run: () => nc.drain() });
  life.onShutdown({ name: 'close egress client', run: () => egress.close() });
  life.onShutdown({ name: 'grpc stop', run: () => grpc.shutdown(1000) });
  // Late: liveness keeps answering while everything before drains.
  life.onShutdown({ name: 'close internal http', run: () => internal.close() });
  life.onShutdown({ name: 'flush telemetry', run: () => telemetry.shutdown() });
  life.onShutdown({ name: 'flush metrics', run: () => metrics.shutdown() });
  life.installSignalHandlers();
  // Plugin hosts die with the node even when it exits abruptly (they also watch for orphaning).
  process.once('exit', () => {
    for (const pid of pool.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
  log.info({ concurrency: cfg.concurrency, warm_hosts: pool.size, egress: cfg.egressUrl, node }, 'sandbox ready');
});
