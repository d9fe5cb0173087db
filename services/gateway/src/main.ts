// Wiring only: config -> clients -> servers -> shutdown.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connectNats, waitForProvisioning, watchNats } from '@talon/kit/nats';
import { createLogger, type Logger } from '@talon/kit/log';
import { EgressClient } from '@talon/kit/egress';
import { initTelemetry } from '@talon/kit/telemetry';
import { CONSUMERS, KV_BUCKETS, STREAMS } from '@talon/kit/subjects';
import { Lifecycle } from '@talon/kit/lifecycle';
import { channelSecretsFact, missingSecretsMessage, neededSecrets, type ChannelSecretsFact, type NeededSecret } from './channel-secrets.ts';
import { listenOn, reportPorts } from '@talon/kit/ports';
import { readTls, startGrpcServer } from '@talon/kit/grpc';
import { runMain } from '@talon/kit/service';
import { startInternalHttp } from '@talon/kit/internal-http';
import { TalonError } from '@talon/kit/errors';
import { initMetrics, METRICS_PATH, observeConsumer } from '@talon/kit/metrics';
import { modelsConfig } from '@talon/kit/models';
import { Api } from './api.ts';
import { TokenStore } from './auth.ts';
import { adapters } from './channels/index.ts';
import { startUnderLease } from '@talon/kit/lease';
import { kvOffsetStore, TelegramPoller } from './channels/telegram-poller.ts';
import { telegramLeaseKey } from './channels/telegram-poll.ts';
import { discordLeaseKey, DiscordGatewayRunner, kvSessionStore } from './channels/discord-gateway-runner.ts';
import { SlackSocketRunner } from './channels/slack-socket-runner.ts';
import { kvSinceStore, MatrixSyncRunner } from './channels/matrix-runner.ts';
import { matrixLeaseKey } from './channels/matrix-sync.ts';
import { MattermostRunner } from './channels/mattermost-runner.ts';
import { mattermostLeaseKey } from './channels/mattermost.ts';
import { slackLeaseKey } from './channels/slack-socket.ts';
import { defaultOrigins, loadGatewayConfig } from './config.ts';
import { ConversationsApi } from './conversations.ts';
import { RoutinesView } from './routines.ts';
import { ReplyDeliverer } from './delivery.ts';
import { EgressApi } from './egress-api.ts';
import { Guard } from './guard.ts';
import { GatewayHttp } from './http.ts';
import { WebhookIngress } from './ingress.ts';
import { acceptRoutineHook } from './routine-hooks.ts';
import { originSet } from './net.ts';
import { PlatformNotifier } from './notices.ts';
import { ReplyRouter } from './replies.ts';
import { PlatformSender } from './sender.ts';
import { ApprovalStore } from './stores/approvals.ts';
import { AuditReader } from './stores/audit.ts';
import { openBucket } from './stores/kv.ts';
import { PairingStore } from './stores/pairing.ts';
import { SkillCatalog } from './stores/skills.ts';
import { UserDirectory } from './stores/users.ts';
import { TurnRunner } from './turns.ts';
import { AgentNames } from './agents.ts';
import { WsGateway } from './ws.ts';

runMain('gateway', async () => {
  const cfg = loadGatewayConfig();
  const log = createLogger({ service: 'gateway', level: cfg.logLevel });
  const telemetry = initTelemetry('gateway');
  const metrics = initMetrics('gateway', { enabled: cfg.metrics === 'on' });
  const life = new Lifecycle(log, cfg.shutdownTimeoutMs);
  const tls = readTls({ caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey });

  const nc = await connectNats({ servers: cfg.natsUrl, user: 'gateway', seedFile: cfg.natsSeedFile, log });

  // Started before `talon provision` (a cluster): wait for the streams rather than crash-loop.

  await waitForProvisioning(nc, 'gateway', log);
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const js = jetstream(nc);
  const tokens = new TokenStore(nc);
  await tokens.open();
  const users = new UserDirectory(nc);
  const pairings = new PairingStore(nc, users, { ttlMs: cfg.pairingCodeTtlMs, noticeIntervalMs: cfg.pairingNoticeIntervalMs });
  const approvals = new ApprovalStore(nc);
  const skills = new SkillCatalog(nc);
  await Promise.all([users.open(jsm), pairings.open(jsm), approvals.open(jsm), skills.open(jsm)]);
  const [seen, deliveryRecords] = await Promise.all([
    openBucket(nc, KV_BUCKETS.inboundSeen, jsm),
    openBucket(nc, KV_BUCKETS.deliveries, jsm),
  ]);

  // Egress: gRPC for signature checks and secret names; the proxy for platform calls. Both connect lazily.
  const egressApi = new EgressApi(cfg.egressAddr, tls);
  const egress = new EgressClient({ proxyUrl: cfg.egressUrl, tls, connections: cfg.deliveryConcurrency + 4 });
  const channelAdapters = adapters(cfg);
  const sender = new PlatformSender(egress, channelAdapters, cfg.deliveryTimeoutMs);
  const notifier = new PlatformNotifier(sender, channelAdapters, log);

  const router = new ReplyRouter(nc, log);
  router.start();
  // Agent profiles' names may be given as `model` too (talon agents).
  const turns = new TurnRunner(router, js, cfg.turnTimeoutMs, egressApi, modelsConfig(cfg), new AgentNames(nc, { ttlMs: 2000, log }));
  const origins = originSet(cfg.allowedOrigins.length > 0 ? cfg.allowedOrigins : defaultOrigins(cfg.httpHost, cfg.httpPort));
  const guard = new Guard({
    tokens,
    trustedProxies: cfg.trustedProxies,
    allowedOrigins: origins,
    rateAddressPerMin: cfg.rateAddressPerMin,
    rateTokenPerMin: cfg.rateTokenPerMin,
    authFailuresPerMin: cfg.authFailuresPerMin,
    rateWebhookPerMin: cfg.rateWebhookPerMin,
    log,
  });
  const ingress = new WebhookIngress({
    adapters: channelAdapters,
    verifier: egressApi,
    redactor: egressApi,
    pairings,
    seen,
    js,
    notifier,
    log,
  });
  const api = new Api({
    tokens,
    approvals,
    pairings,
    users,
    skills,
    audit: new AuditReader(jsm),
    egress: egressApi,
    maxBodyBytes: cfg.maxBodyBytes,
    conversations: new ConversationsApi(nc),
    routines: await new RoutinesView(nc).open(),
  });
  // Telegram by long polling unless the operator chose webhooks: never both.
  const pollTelegram = cfg.channels.includes('telegram') && cfg.telegramMode === 'polling';
  const http = new GatewayHttp({
    guard,
    turns,
    api,
    ingress,
    channels: cfg.channels,
    outboundChannels: pollTelegram ? ['telegram'] : [],
    routineHook: (name, headers, raw) => acceptRoutineHook({ ingress, redactor: egressApi, js }, name, headers, raw),
    log,
    maxBodyBytes: cfg.maxBodyBytes,
    maxWebhookBytes: cfg.maxWebhookBytes,
    maxMessages: cfg.maxMessages,
    maxImageBytes: cfg.apiMaxImageBytes,
    hsts: cfg.hsts,
  });
  const ws = new WsGateway({
    guard,
    turns,
    log,
    maxPayload: cfg.maxBodyBytes,
    maxConnections: cfg.wsMaxConnections,
    maxPerAddress: cfg.wsMaxPerAddress,
    authTimeoutMs: cfg.wsAuthTimeoutMs,
    maxInflight: cfg.wsMaxInflight,
    maxMessages: cfg.maxMessages,
    isDraining: () => http.isDraining,
  });
  http.server.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head));

  const deliverer =
    cfg.channels.length > 0
      ? new ReplyDeliverer({
          nc,
          adapters: channelAdapters,
          enabled: cfg.channels,
          sender,
          records: deliveryRecords,
          log,
          concurrency: cfg.deliveryConcurrency,
          ackWaitMs: cfg.deliveryAckWaitMs,
          backoffMs: cfg.deliveryBackoffMs,
          maxBackoffMs: cfg.deliveryMaxBackoffMs,
          maxAgeMs: cfg.deliveryMaxAgeMs,
        })
      : undefined;
  await deliverer?.start();
  const { outbound } = STREAMS;
  if (deliverer)
    observeConsumer(outbound.name, CONSUMERS.gatewayChannels, () => jsm.consumers.info(outbound.name, CONSUMERS.gatewayChannels));
  if (cfg.channels.length > 0) notifier.watchPairings(nc, cfg.channels);
  // Connections the gateway holds to platforms (no public URL needed): one per bot across
  // replicas, each under its lease in talon_leases; stop() aborts the work and releases it.
  const connections: Array<{ stop(): Promise<void> }> = [];
  let leases: Awaited<ReturnType<typeof openBucket>> | undefined;
  const underLease = async (key: string, work: (term: AbortSignal) => Promise<void>) => {
    leases ??= await openBucket(nc, KV_BUCKETS.leases, jsm);
    connections.push(startUnderLease({ kv: leases.kv, key, owner: `gateway-${router.instance}`, ttlMs: cfg.channelLeaseTtlMs, log }, work));
  };
  if (pollTelegram) {
    const channelState = await openBucket(nc, KV_BUCKETS.channelState, jsm);
    const poller = new TelegramPoller({
      egress,
      intake: ingress,
      offsets: kvOffsetStore(channelState.kv, cfg.telegramBotTokenSecret),
      log,
      apiUrl: cfg.telegramApiUrl,
      botTokenSecret: cfg.telegramBotTokenSecret,
      timeoutS: cfg.telegramPollTimeoutS,
      backoffMs: cfg.channelBackoffMs,
      maxBackoffMs: cfg.channelMaxBackoffMs,
    });
    await underLease(telegramLeaseKey(cfg.telegramBotTokenSecret), (term) => poller.run(term));
  }
  if (cfg.channels.includes('slack') && cfg.slackMode === 'socket') {
    const runner = new SlackSocketRunner({
      egress,
      intake: ingress,
      log,
      apiUrl: cfg.slackApiUrl,
      appTokenSecret: cfg.slackAppTokenSecret,
      maxPayload: cfg.maxWebhookBytes,
      backoffMs: cfg.channelBackoffMs,
      maxBackoffMs: cfg.channelMaxBackoffMs,
    });
    await underLease(slackLeaseKey(cfg.slackAppTokenSecret), (term) => runner.run(term));
  }
  if (cfg.channels.includes('discord') && cfg.discordMode === 'gateway') {
    const channelState = await openBucket(nc, KV_BUCKETS.channelState, jsm);
    const runner = new DiscordGatewayRunner({
      connect: (url) => egress.websocket(url, { maxPayload: cfg.maxWebhookBytes }),
      intake: ingress,
      sessions: kvSessionStore(channelState.kv, cfg.discordGatewayTokenSecret),
      log,
      gatewayUrl: cfg.discordGatewayUrl,
      tokenSecret: cfg.discordGatewayTokenSecret,
      backoffMs: cfg.channelBackoffMs,
      maxBackoffMs: cfg.channelMaxBackoffMs,
    });
    await underLease(discordLeaseKey(cfg.discordGatewayTokenSecret), (term) => runner.run(term));
  }
  if (cfg.channels.includes('matrix') && cfg.matrixHomeserverUrl) {
    const channelState = await openBucket(nc, KV_BUCKETS.channelState, jsm);
    const runner = new MatrixSyncRunner({
      egress,
      intake: ingress,
      since: kvSinceStore(channelState.kv, cfg.matrixAccessTokenSecret),
      log,
      homeserverUrl: cfg.matrixHomeserverUrl,
      tokenSecret: cfg.matrixAccessTokenSecret,
      ...(cfg.matrixUserId ? { userId: cfg.matrixUserId } : {}),
      autoJoin: cfg.matrixAutoJoin,
      timeoutS: cfg.matrixSyncTimeoutS,
      backoffMs: cfg.channelBackoffMs,
      maxBackoffMs: cfg.channelMaxBackoffMs,
    });
    await underLease(matrixLeaseKey(cfg.matrixAccessTokenSecret), (term) => runner.run(term));
  }
  if (cfg.channels.includes('mattermost') && cfg.mattermostUrl) {
    const runner = new MattermostRunner({
      egress,
      intake: ingress,
      log,
      serverUrl: cfg.mattermostUrl,
      tokenSecret: cfg.mattermostBotTokenSecret,
      maxPayload: cfg.maxWebhookBytes,
      backoffMs: cfg.channelBackoffMs,
      maxBackoffMs: cfg.channelMaxBackoffMs,
    });
    await underLease(mattermostLeaseKey(cfg.mattermostBotTokenSecret), (term) => runner.run(term));
  }

  const httpPort = await listenOn(http.server, { service: 'gateway', key: 'TALON_GATEWAY_PORT', host: cfg.httpHost, port: cfg.httpPort });
  if (cfg.allowedOrigins.length === 0 && httpPort !== cfg.httpPort) {
    // Port 0: the page's own origin is known only now that the kernel chose the port.
    origins.clear();
    for (const o of originSet(defaultOrigins(cfg.httpHost, httpPort))) origins.add(o);
  }
  const grpc = await startGrpcServer({ name: 'gateway', host: cfg.grpcHost, port: cfg.grpcPort, tls, log, services: [] });
  const channelSecrets: { now: ChannelSecretsFact } = { now: { state: 'checking' } };
  const internal = await startInternalHttp({
    service: 'gateway',
    host: cfg.internalHost,
    port: cfg.internalPort,
    readiness: grpc.readiness,
    routes: { [METRICS_PATH]: metrics.route },
    facts: () => (cfg.channels.length > 0 ? { channels: cfg.channels, channel_secrets: channelSecrets.now } : {}),
  });
  reportPorts({ http: httpPort, grpc: grpc.port, internal: internal.port });
  grpc.setServing('SERVING');
  // Health follows the NATS connection: no work is sent here while it is down.
  watchNats(nc, (up) => grpc.setDependency('nats', up));

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
      ws.closeAll();
    },
  });
  life.onShutdown({ name: 'stop reply delivery intake', run: async () => deliverer?.stop() });
  // The long poll is aborted and the lease given up while NATS is still connected.
  life.onShutdown({
    name: 'stop platform connections (telegram polling, slack socket mode, discord gateway)',
    run: async () => {
      await Promise.all(connections.map((c) => c.stop()));
    },
  });
  life.onShutdown({
    name: 'finish in-flight requests and deliveries',
    run: async () => {
      await Promise.all([http.inFlight.idle(), deliverer?.inFlight.idle()]);
    },
    timeoutMs: Math.max(1000, cfg.shutdownTimeoutMs - 4000),
  });
  life.onShutdown({
    name: 'drain nats',
    run: async () => {
      notifier.stop();
      router.stop();
      await nc.drain();
    },
  });
  life.onShutdown({
    name: 'close egress clients',
    run: async () => {
      egressApi.close();
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
      url: `http://${cfg.httpHost}:${httpPort}`,
      instance: router.instance,
      channels: cfg.channels,
      origins: [...guard.allowedOrigins],
    },
    'gateway ready',
  );
  if (cfg.channels.length > 0) checkChannelSecrets(egressApi, neededSecrets(cfg.channels, cfg), log, channelSecrets);
});

/**
 * Finds which enabled channel lacks its vault secrets: logged once per change and reported in
 * /readyz (`channel_secrets`, printed by `talon up`). Asked every 30 s while the vault cannot
 * answer (sealed, egress starting) and every 60 s while secrets are missing (so storing them
 * shows); no timer once all are there, nor without channels.
 */
function checkChannelSecrets(egressApi: EgressApi, needed: NeededSecret[], log: Logger, out: { now: ChannelSecretsFact }): void {
  let said = '';
  const attempt = () => {
    egressApi.secretNames().then(
      (stored) => {
        const fact = channelSecretsFact(
          needed,
          stored.map((s) => s.name),
        );
        out.now = fact;
        if (fact.state !== 'missing') return;
        const key = fact.missing.map((m) => m.secret).join(',');
        if (key !== said) log.warn({ missing: fact.missing.map((m) => m.secret) }, missingSecretsMessage(fact.missing));
        said = key;
        setTimeout(attempt, 60_000).unref();
      },
      (err: unknown) => {
        out.now = { state: 'unknown', reason: err instanceof TalonError ? err.code : 'unavailable' };
        setTimeout(attempt, 30_000).unref();
      },
    );
  };
  attempt();
}
