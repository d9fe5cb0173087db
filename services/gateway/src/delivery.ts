// Delivers agent replies to chat platforms, at least once and without repeats.
//
// Replies arrive on TALON_OUTBOUND (talon.outbound.ch.<channel>) and are pulled by
// one durable consumer shared by every gateway replica, so a reply published while
// all gateways are down waits for the next one. A message is acknowledged only
// after the platform confirmed every part; progress is recorded per part in
// talon_deliveries so a redelivered reply resumes instead of resending (Discord
// additionally deduplicates by nonce). A slow or failing platform is retried with
// exponential backoff and jitter (honouring Retry-After) until the reply is too
// old; a permanent refusal (4xx) is recorded and dropped.
import { createHash } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { CHANNEL_REPLY_FILTER, CONSUMERS, STREAMS } from '@talon/kit/subjects';
import { InFlight } from '@talon/kit/lifecycle';
import type { Logger } from '@talon/kit/log';
import { isConsumerNotFound, type NatsConnection } from '@talon/kit/nats';
import { DeliveryRecord, OutboundMessage } from '@talon/proto';
import type { ChannelAdapter } from './channels/index.ts';
import { isChannel, type Channel } from './channels/types.ts';
import type { CallSender } from './sender.ts';
import type { Bucket } from './stores/kv.ts';

export interface DeliveryOptions {
  nc: NatsConnection;
  adapters: Record<Channel, ChannelAdapter>;
  enabled: readonly Channel[];
  sender: CallSender;
  records: Bucket;
  log: Logger;
  concurrency: number;
  ackWaitMs: number;
  backoffMs: number;
  maxBackoffMs: number;
  maxAgeMs: number;
  now?: () => number;
  random?: () => number;
}

export function deliveryKey(inboundId: string): string {
  return `delivery.${createHash('sha256').update(inboundId).digest('hex').slice(0, 40)}`;
}

/** Exponential backoff with jitter in [50%, 100%] of the step, at least the platform's Retry-After. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, afterMs: number | undefined, random = Math.random): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 30)));
  const jittered = Math.round(step * (0.5 + random() * 0.5));
  return Math.min(maxMs, Math.max(jittered, afterMs ?? 0));
}

/** The text a platform user sees when the turn failed (codes only; details stay in the logs). */
export function failureText(code: string): string {
  return `Sorry, I could not answer that (${code}). Please try again in a moment.`;
}

export class ReplyDeliverer {
  private readonly nc: NatsConnection;
  private readonly adapters: Record<Channel, ChannelAdapter>;
  private readonly enabled: readonly Channel[];
  private readonly sender: CallSender;
  private readonly records: Bucket;
  private readonly log: Logger;
  private readonly concurrency: number;
  private readonly ackWaitMs: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly random: (() => number) | undefined;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  readonly inFlight = new InFlight();
  private slots: number;
  private waiters: Array<() => void> = [];
  /** Counters for logs, metrics and tests. */
  readonly counters = { delivered: 0, retried: 0, failed: 0, skipped: 0, partsSent: 0 };

  constructor(opts: DeliveryOptions) {
    this.nc = opts.nc;
    this.adapters = opts.adapters;
    this.enabled = opts.enabled;
    this.sender = opts.sender;
    this.records = opts.records;
    this.log = opts.log;
    this.concurrency = opts.concurrency;
    this.ackWaitMs = opts.ackWaitMs;
    this.backoffMs = opts.backoffMs;
    this.maxBackoffMs = opts.maxBackoffMs;
    this.maxAgeMs = opts.maxAgeMs;
    this.now = opts.now ?? Date.now;
    this.random = opts.random;
    this.slots = opts.concurrency;
  }

  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const cfg = {
      durable_name: CONSUMERS.gatewayChannels,
      filter_subject: CHANNEL_REPLY_FILTER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.ackWaitMs),
      max_deliver: -1,
      max_ack_pending: Math.max(64, this.concurrency * 4),
    };
    try {
      const info = await jsm.consumers.info(STREAMS.outbound.name, CONSUMERS.gatewayChannels);
      if (info.config.ack_wait !== cfg.ack_wait || info.config.max_ack_pending !== cfg.max_ack_pending) {
        await jsm.consumers.update(STREAMS.outbound.name, CONSUMERS.gatewayChannels, {
          ack_wait: cfg.ack_wait,
          max_ack_pending: cfg.max_ack_pending,
        });
      }
    } catch (err) {
      if (!isConsumerNotFound(err)) throw err;
      await jsm.consumers.add(STREAMS.outbound.name, cfg);
    }
  }

  async start(): Promise<void> {
    const jsm = await jetstreamManager(this.nc, { checkAPI: false });
    await this.ensureConsumer(jsm);
    const consumer = await jetstream(this.nc).consumers.get(STREAMS.outbound.name, CONSUMERS.gatewayChannels);
    this.messages = await consumer.consume({ max_messages: this.concurrency });
    this.loop = (async () => {
      for await (const m of this.messages!) {
        await this.acquire();
        void this.inFlight.track(() => this.handle(m)).finally(() => this.release());
      }
    })();
  }

  async stop(): Promise<void> {
    await this.messages?.close();
    await this.loop?.catch(() => undefined);
  }

  private acquire(): Promise<void> {
    if (this.slots > 0) {
      this.slots -= 1;
      return Promise.resolve();
    }
    return new Promise((r) => this.waiters.push(r));
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.slots += 1;
  }

  private async handle(m: JsMsg): Promise<void> {
    const channel = m.subject.slice(CHANNEL_REPLY_FILTER.length - 1);
    let out: OutboundMessage;
    try {
      out = OutboundMessage.decode(m.data);
    } catch {
      this.log.error({ subject: m.subject, seq: m.seq }, 'undecodable channel reply; dropping it');
      m.term('undecodable');
      return;
    }
    if (!isChannel(channel) || !this.enabled.includes(channel) || out.conversation?.channel !== channel) {
      this.log.error(
        { subject: m.subject, inbound_id: out.inboundId },
        'channel reply for a channel this gateway does not serve; dropping it',
      );
      this.counters.skipped += 1;
      m.term('unknown channel');
      return;
    }
    const heartbeat = setInterval(() => m.working(), Math.max(200, Math.floor(this.ackWaitMs / 3)));
    try {
      await this.deliver(m, channel, out);
    } catch (err) {
      // NATS trouble while recording progress: redeliver later; recorded parts are not resent.
      this.log.warn({ inbound_id: out.inboundId, err: (err as Error).message }, 'delivery interrupted; will retry');
      m.nak(backoffDelay(m.info.deliveryCount, this.backoffMs, this.maxBackoffMs, undefined, this.random));
    } finally {
      clearInterval(heartbeat);
    }
  }

  private async deliver(m: JsMsg, channel: Channel, out: OutboundMessage): Promise<void> {
    const key = deliveryKey(out.inboundId);
    const existing = await this.records.get(key);
    let rec: DeliveryRecord = existing
      ? DeliveryRecord.decode(existing.value)
      : {
          inboundId: out.inboundId,
          channel,
          partsTotal: 0,
          partsSent: 0,
          platformMessageIds: [],
          firstAttemptAtMs: this.now(),
          doneAtMs: 0,
          attempts: 0,
          lastError: '',
          failed: false,
        };
    if (rec.doneAtMs > 0) {
      m.ack();
      return;
    }
    const text = out.error ? failureText(out.error.code) : out.content.trim() === '' ? '(no answer)' : out.content;
    let calls;
    try {
      calls = this.adapters[channel].send(out.conversation!.threadId, text, out.inboundId, out.error?.code);
    } catch (err) {
      await this.finish(key, { ...rec, failed: true, lastError: 'bad_thread', doneAtMs: this.now() });
      this.log.error({ inbound_id: out.inboundId, err: (err as Error).message }, 'reply cannot be addressed; dropping it');
      m.term('bad thread');
      return;
    }
    rec = { ...rec, partsTotal: calls.length, attempts: rec.attempts + 1 };
    for (let i = rec.partsSent; i < calls.length; i++) {
      const v = await this.sender.send(channel, calls[i]!, out.conversation?.userId);
      if (v.ok) {
        rec = { ...rec, partsSent: i + 1, platformMessageIds: [...rec.platformMessageIds, v.messageId] };
        this.counters.partsSent += 1;
        await this.records.kv.put(key, DeliveryRecord.encode(rec).finish());
        continue;
      }
      const age = this.now() - (out.createdAtMs || rec.firstAttemptAtMs);
      if (!v.retry || age > this.maxAgeMs) {
        await this.finish(key, { ...rec, failed: true, lastError: v.code, doneAtMs: this.now() });
        this.counters.failed += 1;
        this.log.error(
          { inbound_id: out.inboundId, channel, code: v.code, attempts: rec.attempts, age_ms: age },
          v.retry ? 'reply not delivered in time; giving up' : 'platform refused the reply; giving up',
        );
        m.term(v.code);
        return;
      }
      const delay = backoffDelay(m.info.deliveryCount, this.backoffMs, this.maxBackoffMs, v.afterMs, this.random);
      await this.records.kv.put(key, DeliveryRecord.encode({ ...rec, lastError: v.code }).finish());
      this.counters.retried += 1;
      this.log.warn(
        { inbound_id: out.inboundId, channel, code: v.code, attempt: m.info.deliveryCount, retry_in_ms: delay },
        'platform did not take the reply; retrying',
      );
      m.nak(delay);
      return;
    }
    await this.finish(key, { ...rec, doneAtMs: this.now(), lastError: '' });
    this.counters.delivered += 1;
    this.log.info({ inbound_id: out.inboundId, channel, parts: calls.length, attempt: m.info.deliveryCount }, 'reply delivered');
    await m.ackAck();
  }

  private async finish(key: string, rec: DeliveryRecord): Promise<void> {
    await this.records.kv.put(key, DeliveryRecord.encode(rec).finish());
  }
}
