// NATS connection with per-service nkey credentials, plus JetStream provisioning
// (run by the admin identity: `talon up` and the test harness).
import { readFileSync } from 'node:fs';
import { connect, nkeyAuthenticator, headers as natsHeaders, type NatsConnection, type MsgHdrs } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { STREAMS, KV_BUCKETS, OBJECT_BUCKETS, inboxPrefix, requiredStreams, type NatsUser } from './subjects.ts';
import { injectHeaders } from './telemetry.ts';
import type { Logger } from './log.ts';

export type { NatsConnection, MsgHdrs };

export interface NatsConnectOptions {
  servers: string;
  /** Workload name: NATS client name and inbox prefix. */
  user: string;
  seedFile: string;
  log: Logger;
  /** Keep retrying the first connection for this long (a dependency may start after us). */
  connectTimeoutMs?: number;
}

/**
 * Tells `onChange` when the connection drops (false) and when it is back (true), until
 * it closes: a service's health follows its NATS connection (GrpcServerHandle.setDependency).
 */
export function watchNats(nc: NatsConnection, onChange: (up: boolean) => void): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') onChange(false);
      else if (s.type === 'reconnect') onChange(true);
    }
  })();
}

export async function connectNats(opts: NatsConnectOptions): Promise<NatsConnection> {
  const seed = new TextEncoder().encode(readFileSync(opts.seedFile, 'utf8').trim());
  const deadline = Date.now() + (opts.connectTimeoutMs ?? 15_000);
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const nc = await connect({
        servers: opts.servers.split(','),
        name: `talon-${opts.user}`,
        authenticator: nkeyAuthenticator(seed),
        inboxPrefix: inboxPrefix(opts.user),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: 2000,
      });
      void (async () => {
        for await (const s of nc.status()) {
          if (s.type === 'error' || s.type === 'disconnect' || s.type === 'reconnect') {
            opts.log.warn({ nats_status: s.type, detail: String((s as { error?: unknown }).error ?? '') }, 'nats status');
          }
        }
      })();
      return nc;
    } catch (err) {
      lastErr = err;
      const msg = String((err as Error).message);
      if (/authorization/i.test(msg)) break; // wrong credentials: retrying will not help
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw new Error(
    `cannot connect to NATS at ${opts.servers} as ${opts.user}: ${String((lastErr as Error)?.message ?? lastErr)}. ` +
      `Is nats-server running (talon up starts it) and is the seed file ${opts.seedFile} current?`,
  );
}

/** Headers for a published message, carrying the active trace context. */
export function tracedHeaders(extra?: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  injectHeaders(h);
  for (const [k, v] of Object.entries(extra ?? {})) h.set(k, v);
  return h;
}

export interface NkeyPair {
  publicKey: string;
  seed: string;
}

export function newNkeyUser(): NkeyPair {
  const kp = createUser();
  return { publicKey: kp.getPublicKey(), seed: new TextDecoder().decode(kp.getSeed()) };
}

export function publicKeyOfSeed(seed: string): string {
  return fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey();
}

/**
 * Opens a KV bucket for reads by direct get: no consumer and no STREAM.MSG.GET
 * right needed, which is all most services' NATS users may do. (The option is
 * missing from the client's KvOptions type, hence the cast.)
 */
export function openDirectKv(nc: NatsConnection, bucket: string): Promise<KV> {
  return new Kvm(nc).open(bucket, { allow_direct: true } as never);
}

/**
 * Creates a KV bucket, or brings an existing one's expiry in line with `ttl`
 * (creating over an existing bucket leaves its settings as they were).
 */
async function ensureKv(nc: NatsConnection, jsm: JetStreamManager, name: string, opts: Record<string, unknown>): Promise<void> {
  await new Kvm(nc).create(name, opts);
  const ttlMs = typeof opts.ttl === 'number' ? opts.ttl : 0;
  const replicas = typeof opts.replicas === 'number' ? opts.replicas : 1;
  const info = await jsm.streams.info(`KV_${name}`);
  if (info.config.max_age !== ttlMs * 1e6 || info.config.num_replicas !== replicas)
    await jsm.streams.update(`KV_${name}`, { ...info.config, max_age: ttlMs * 1e6, num_replicas: replicas });
}

/** JetStream's answer for a stream (or bucket) that does not exist. */
export function isStreamNotFound(err: unknown): boolean {
  return /stream not found/i.test(String((err as Error)?.message));
}

/** JetStream's answer for a durable consumer that does not exist yet. */
export function isConsumerNotFound(err: unknown): boolean {
  return /consumer not found/i.test(String((err as Error)?.message));
}

export interface ProvisionOptions {
  /** Copies of every stream and bucket: 1 on a single NATS server, 3 on a 3-node cluster. */
  replicas?: number;
  /** Told about each stream or bucket as it is ensured. */
  onProgress?: (what: string) => void;
}

/**
 * Creates or updates every stream and bucket Talon needs. Idempotent: `talon up` runs
 * it at every start, `talon provision` for a cluster (compose one-shot service,
 * Kubernetes Job); services wait for it (waitForProvisioning) rather than fail.
 */
export async function provisionJetStream(nc: NatsConnection, opts: ProvisionOptions = {}): Promise<JetStreamManager> {
  const replicas = opts.replicas ?? 1;
  const jsm = await jetstreamManager(nc);
  const ensure = async (cfg: Parameters<JetStreamManager['streams']['add']>[0] & { name: string }) => {
    cfg.num_replicas = replicas;
    opts.onProgress?.(`stream ${cfg.name}`);
    try {
      await jsm.streams.info(cfg.name);
      await jsm.streams.update(cfg.name, cfg);
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
      await jsm.streams.add(cfg);
    }
  };
  // Every KV bucket: file storage, direct gets, the chosen replicas; told as it is ensured.
  const kv = (name: string, settings: { history: number; ttl?: number }) => {
    opts.onProgress?.(`bucket ${name}`);
    return ensureKv(nc, jsm, name, { ...settings, replicas, storage: StorageType.File, allow_direct: true });
  };
  const day = 86_400 * 1e9;
  await ensure({
    name: STREAMS.inbound.name,
    subjects: [...STREAMS.inbound.subjects],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: 7 * day,
    duplicate_window: 120 * 1e9,
    max_msg_size: 1024 * 1024,
  });
  await ensure({
    name: STREAMS.outbound.name,
    subjects: [...STREAMS.outbound.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: 1 * day,
    duplicate_window: 120 * 1e9,
    max_msg_size: 1024 * 1024,
  });
  await ensure({
    name: STREAMS.audit.name,
    subjects: [...STREAMS.audit.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: 30 * day,
    max_msg_size: 256 * 1024,
  });
  // Routine events: kept until an orchestrator has queued their turns (work queue), a day at most.
  await ensure({
    name: STREAMS.events.name,
    subjects: [...STREAMS.events.subjects],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: 1 * day,
    duplicate_window: 120 * 1e9,
    max_msg_size: 256 * 1024,
  });
  await kv(KV_BUCKETS.tokens, { history: 1 });
  // Skill registry: a few revisions per key keep the approval history inspectable.
  await kv(KV_BUCKETS.skills, { history: 5 });
  // Gateway state: users, channel pairings and approvals keep a little history for audit;
  // delivery progress and inbound dedupe marks expire on their own.
  await kv(KV_BUCKETS.users, { history: 5 });
  await kv(KV_BUCKETS.pairings, { history: 5 });
  // Approvals are decided within days (the orchestrator's limit is 3); decided records
  // stay a month for audit, then expire.
  await kv(KV_BUCKETS.approvals, { history: 5, ttl: 30 * 86_400_000 });
  await kv(KV_BUCKETS.deliveries, { history: 1, ttl: 3 * 86_400_000 });
  await kv(KV_BUCKETS.inboundSeen, { history: 1, ttl: 2 * 86_400_000 });
  // Parked turns of the orchestrator: kept past any approval's expiry (at most 3 days)
  // so a redelivered inbound message is recognised; then they expire on their own.
  await kv(KV_BUCKETS.turns, { history: 1, ttl: 7 * 86_400_000 });
  // Routines and their firings: no expiry (a claim must outlive its slot, or a missed-run
  // check would fire it again); runs are bounded per routine by the orchestrator instead.
  await kv(KV_BUCKETS.routines, { history: 5 });
  await kv(KV_BUCKETS.routineRuns, { history: 1 });
  // Leader leases are renewed every few seconds by their holder; a key left by a holder that
  // died is taken over by revision (lease.ts), the bucket's expiry only clears old keys.
  await kv(KV_BUCKETS.leases, { history: 1, ttl: 86_400_000 });
  // Channel progress (the Telegram getUpdates offset) outlives any outage; no expiry.
  await kv(KV_BUCKETS.channelState, { history: 1 });
  // MCP servers: a few revisions keep the approval history inspectable, like skills.
  await kv(KV_BUCKETS.mcp, { history: 5 });
  // Agent profiles: a few revisions, like MCP servers.
  await kv(KV_BUCKETS.agents, { history: 5 });
  opts.onProgress?.(`object bucket ${OBJECT_BUCKETS.skillBinaries}`);
  await new Objm(nc).create(OBJECT_BUCKETS.skillBinaries, { storage: StorageType.File, replicas });
  return jsm;
}

/**
 * Waits until the streams `user` needs exist (requiredStreams), checking every
 * `intervalMs`: a service started before provisioning waits, saying once what it waits
 * for and how to fix it, instead of exiting into a crash loop. Resolves at once when
 * everything is there; rejects only when `signal` aborts. For the first few seconds it
 * checks often and says nothing: `talon up` starts services while it provisions.
 */
export async function waitForProvisioning(
  nc: NatsConnection,
  user: NatsUser,
  log: Logger,
  opts: { intervalMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const since = Date.now();
  const QUIET_MS = 5000;
  let told = false;
  for (;;) {
    const missing: string[] = [];
    for (const name of requiredStreams(user)) {
      try {
        await jsm.streams.info(name);
      } catch (err) {
        if (!isStreamNotFound(err)) throw err;
        missing.push(name);
      }
    }
    if (missing.length === 0) {
      if (told) log.info({ streams: requiredStreams(user) }, 'JetStream is provisioned; starting');
      return;
    }
    const quiet = Date.now() - since < QUIET_MS;
    if (!told && !quiet) {
      log.warn(
        { missing },
        `JetStream is not provisioned (missing ${missing.join(', ')}); waiting for it. Run \`talon provision\` against this NATS (compose and Kubernetes run it as a one-shot job)`,
      );
      told = true;
    }
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, quiet ? Math.min(100, opts.intervalMs ?? 100) : (opts.intervalMs ?? 2000));
      opts.signal?.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new Error('stopped while waiting for JetStream provisioning'));
      });
    });
  }
}
