// Telegram long polling, the runner: getUpdates through egress (the gateway never holds the
// bot token), each message handed to the same intake as a verified webhook (pairing,
// redaction, JetStream with the update's message id), and only then the offset advanced and
// stored. A crash between queueing and storing the offset polls the update again; its
// message id (JetStream's duplicate window, talon_inbound_seen) drops the second copy.
// One replica polls a bot at a time: main.ts runs this under a lease (@talon/kit/lease).
// Logs only when the state changes: an idle poller writes nothing per poll.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KV } from '@nats-io/kv';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { WebhookResult } from '../ingress.ts';
import type { Channel, PlatformCall } from './types.ts';
import { pollCall, type PollAnswer, type PollEgress } from './poll-call.ts';
import {
  decodeOffset,
  deleteWebhookCall,
  encodeOffset,
  getUpdatesCall,
  nextOffset,
  parseUpdates,
  reconnectDelayMs,
  telegramOffsetKey,
  type PollVerdict,
} from './telegram-poll.ts';

/** Largest getUpdates answer read (100 updates of at most 4096 characters each fit many times). */

/** Where the next offset is kept between polls and restarts. */
export interface OffsetStore {
  load(): Promise<number | undefined>;
  save(offset: number): Promise<void>;
}

/** The offset in NATS KV (talon_channel_state), under the bot's key. */
export function kvOffsetStore(kv: KV, botTokenSecret: string, now: () => number = Date.now): OffsetStore {
  const key = telegramOffsetKey(botTokenSecret);
  return {
    async load() {
      const e = await kv.get(key);
      if (!e || e.operation !== 'PUT') return undefined;
      return decodeOffset(e.value, e.created.getTime(), now());
    },
    async save(offset) {
      await kv.put(key, encodeOffset(offset));
    },
  };
}

/** What the poller reads of an answer through egress (EgressClient's response is one). */
export interface TelegramPollerDeps {
  egress: PollEgress;
  /** The webhook intake after verification (WebhookIngress.accept). */
  intake: { accept(channel: Channel, raw: Buffer): Promise<WebhookResult> };
  offsets: OffsetStore;
  log: Logger;
  apiUrl: string;
  botTokenSecret: string;
  timeoutS: number;
  backoffMs: number;
  maxBackoffMs: number;
}

type State = 'polling' | 'failing';

export class TelegramPoller {
  private readonly d: TelegramPollerDeps;
  private state: State = 'polling';
  private problem = '';

  constructor(deps: TelegramPollerDeps) {
    this.d = deps;
  }

  /** Polls until `signal` aborts (shutdown or a lost lease). Never throws for platform or NATS trouble. */
  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.d;
    this.problem = '';
    let offset = await this.d.offsets.load().catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'telegram polling: stored offset unreadable; starting from the unconfirmed updates');
      return undefined;
    });
    this.state = 'polling';
    log.info({ offset: offset ?? 'unconfirmed updates' }, 'telegram polling started');
    let failures = 0;
    let webhookDeleted = false;
    while (!signal.aborted) {
      const verdict = await this.poll(offset, signal);
      if (signal.aborted) break;
      if (verdict.kind === 'updates') {
        const before = offset;
        let failed: string | undefined;
        for (const u of verdict.updates) {
          // Leadership lost or shutting down: the next holder polls the rest.
          if (signal.aborted) break;
          if (offset !== undefined && u.updateId < offset) continue;
          try {
            await this.d.intake.accept('telegram', u.raw);
          } catch (err) {
            // Not queued (NATS or the redactor away): not confirmed either; polled again after the backoff.
            failed = err instanceof TalonError ? `intake_${err.code}` : 'intake_error';
            break;
          }
          offset = nextOffset(offset, [u]);
        }
        if (offset !== undefined && offset !== before) {
          await this.d.offsets.save(offset).catch((err: unknown) => {
            // The updates are queued; a lost offset only means polling them again (deduplicated).
            this.change('failing', 'offset_not_stored', { err: (err as Error).message });
          });
        }
        if (!failed) {
          failures = 0;
          this.change('polling', '');
          continue;
        }
        failures += 1;
        this.change('failing', failed);
        await this.pause(reconnectDelayMs(failures, this.d.backoffMs, this.d.maxBackoffMs), signal);
        continue;
      }
      if (verdict.kind === 'webhook_active' && !webhookDeleted) {
        webhookDeleted = true;
        log.warn(
          {},
          'telegram polling: the bot has a webhook set, which blocks getUpdates; deleting it (set GATEWAY_TELEGRAM_MODE=webhook to use webhooks instead)',
        );
        const del = await this.call(deleteWebhookCall(this.d.apiUrl, this.d.botTokenSecret), signal, 15_000);
        if (signal.aborted) break;
        if (!('error' in del) && del.status === 200 && /"ok"\s*:\s*true/.test(del.body)) continue;
        failures += 1;
        this.change('failing', `delete_webhook_${'error' in del ? del.error : `http_${del.status}`}`);
        await this.pause(reconnectDelayMs(failures, this.d.backoffMs, this.d.maxBackoffMs), signal);
        continue;
      }
      failures += 1;
      const code = 'code' in verdict ? verdict.code : verdict.kind;
      this.change('failing', code);
      const afterMs = verdict.kind === 'retry' ? verdict.afterMs : undefined;
      // A refused token or a second poller will not fix itself quickly: wait the longest.
      const slow = verdict.kind === 'refused' || verdict.kind === 'conflict';
      await this.pause(slow ? this.d.maxBackoffMs : reconnectDelayMs(failures, this.d.backoffMs, this.d.maxBackoffMs, afterMs), signal);
    }
    log.info({}, 'telegram polling stopped');
  }

  private async poll(offset: number | undefined, signal: AbortSignal): Promise<PollVerdict> {
    const call = getUpdatesCall(this.d.apiUrl, this.d.botTokenSecret, offset, this.d.timeoutS);
    const r = await this.call(call, signal, this.d.timeoutS * 1000 + 15_000);
    return 'error' in r ? { kind: 'retry', code: r.error } : parseUpdates(r.status, r.body, r.retryAfter);
  }

  /** One call through egress (poll-call.ts). */
  private call(call: PlatformCall, signal: AbortSignal, timeoutMs: number): Promise<PollAnswer> {
    return pollCall(this.d.egress, call, signal, timeoutMs);
  }

  /** One log line per change of state or problem, never one per poll. */
  private change(state: State, problem: string, extra: Record<string, unknown> = {}): void {
    if (state === this.state && problem === this.problem) return;
    const was = this.problem;
    this.state = state;
    this.problem = problem;
    if (state === 'polling') this.d.log.info({ after: was }, 'telegram polling recovered');
    else this.d.log.warn({ problem, ...extra }, 'telegram polling failing; retrying with backoff');
  }

  private async pause(ms: number, signal: AbortSignal): Promise<void> {
    await sleep(ms, undefined, { signal }).catch(() => undefined);
  }
}
