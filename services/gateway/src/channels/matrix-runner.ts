// Matrix by /sync long polling, the runner: /sync through egress (the gateway never holds the
// access token), each message handed to the intake (pairing, redaction, JetStream with the
// event's id), and only then the `since` token advanced and stored. The initial sync (no stored
// token) only takes its next_batch: history from before the bot started is never answered.
// A crash between queueing and storing the token syncs the batch again; the event ids
// (JetStream's duplicate window, talon_inbound_seen) drop the second copies.
// One replica syncs a bot at a time: main.ts runs this under a lease (@talon/kit/lease).
// Logs only when the state changes: an idle runner writes nothing per poll.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KV } from '@nats-io/kv';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { WebhookResult } from '../ingress.ts';
import {
  afterOwnJoin,
  decodeSince,
  encodeSince,
  joinCall,
  matrixSinceKey,
  parseSync,
  parseWhoami,
  syncCall,
  timelineMessage,
  whoamiCall,
  type FailureVerdict,
  type MatrixCall,
  type SyncVerdict,
} from './matrix-sync.ts';
import { reconnectDelayMs } from './telegram-poll.ts';
import type { InboundEvent } from './types.ts';
import { pollCall, type PollAnswer, type PollEgress } from './poll-call.ts';

/** Largest /sync answer read. */

/** Where the since token is kept between polls and restarts. */
export interface SinceStore {
  load(): Promise<string | undefined>;
  save(since: string): Promise<void>;
}

/** The since token in NATS KV (talon_channel_state), under the bot's key. */
export function kvSinceStore(kv: KV, tokenSecret: string): SinceStore {
  const key = matrixSinceKey(tokenSecret);
  return {
    async load() {
      const e = await kv.get(key);
      return e && e.operation === 'PUT' ? decodeSince(e.value) : undefined;
    },
    async save(since) {
      await kv.put(key, encodeSince(since));
    },
  };
}

export interface MatrixRunnerDeps {
  egress: PollEgress;
  /** The intake after verification (WebhookIngress.acceptEvent). */
  intake: { acceptEvent(ev: InboundEvent): Promise<WebhookResult> };
  since: SinceStore;
  log: Logger;
  homeserverUrl: string;
  tokenSecret: string;
  /** The bot's user id when configured; else asked of the homeserver (whoami) at each start. */
  userId?: string;
  autoJoin: boolean;
  timeoutS: number;
  backoffMs: number;
  maxBackoffMs: number;
}

type State = 'syncing' | 'failing';

export class MatrixSyncRunner {
  private readonly d: MatrixRunnerDeps;
  private state: State = 'syncing';
  private problem = '';
  private failures = 0;

  constructor(deps: MatrixRunnerDeps) {
    this.d = deps;
  }

  /** Syncs until `signal` aborts (shutdown or a lost lease). Never throws for homeserver or NATS trouble. */
  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.d;
    this.problem = '';
    this.state = 'syncing';
    this.failures = 0;
    const botUserId = await this.whoami(signal);
    if (botUserId === undefined) return;
    let since = await this.d.since.load().catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'matrix sync: stored since token unreadable; starting with an initial sync');
      return undefined;
    });
    log.info({ user: botUserId, from: since === undefined ? 'initial sync' : 'stored since token' }, 'matrix sync started');
    while (!signal.aborted) {
      // The initial sync is not held open: it only tells where "now" is.
      const verdict = await this.sync(since, since === undefined ? 0 : this.d.timeoutS * 1000, signal);
      if (signal.aborted) break;
      if (verdict.kind !== 'sync') {
        await this.fail(verdict, signal);
        continue;
      }
      let failed: string | undefined;
      if (since === undefined) {
        log.info({ skipped: verdict.events.length }, 'matrix initial sync done; messages from before it are not answered');
      } else {
        if (verdict.limited.length > 0) {
          log.warn(
            { rooms: verdict.limited.length },
            'matrix sync: a room had more new events than one sync carries; the older ones were skipped',
          );
        }
        failed = await this.take(afterOwnJoin(verdict.events, botUserId), botUserId, signal);
      }
      if (signal.aborted) break;
      if (failed) {
        // Not queued (NATS or the redactor away): the token stays, so the batch is synced again.
        await this.fail({ kind: 'retry', code: failed }, signal);
        continue;
      }
      since = verdict.nextBatch;
      await this.d.since.save(since).catch((err: unknown) => {
        // The messages are queued; a lost token only means syncing them again (deduplicated).
        this.change('failing', 'since_not_stored', { err: (err as Error).message });
      });
      await this.invites(verdict.invites, signal);
      this.failures = 0;
      this.change('syncing', '');
    }
    log.info({}, 'matrix sync stopped');
  }

  /** Hands each message to the intake in order; the first failure stops the batch (its code). */
  private async take(events: Array<{ roomId: string; event: Record<string, unknown> }>, botUserId: string, signal: AbortSignal) {
    for (const { roomId, event } of events) {
      if (signal.aborted) return 'aborted';
      const m = timelineMessage(roomId, event, botUserId);
      if (m.kind === 'ignore') {
        if (m.encrypted) this.d.log.debug({ room: roomId }, 'matrix: end-to-end encrypted message ignored (E2EE is not supported)');
        continue;
      }
      try {
        await this.d.intake.acceptEvent(m.event);
      } catch (err) {
        return err instanceof TalonError ? `intake_${err.code}` : 'intake_error';
      }
    }
    return undefined;
  }

  private async invites(rooms: readonly string[], signal: AbortSignal): Promise<void> {
    for (const room of rooms) {
      if (!this.d.autoJoin) {
        this.d.log.info({ room }, 'matrix: invited to a room; not joining (GATEWAY_MATRIX_AUTO_JOIN is off)');
        continue;
      }
      const r = await this.call(joinCall(this.d.homeserverUrl, this.d.tokenSecret, room), signal, 15_000);
      if (signal.aborted) return;
      if (!('error' in r) && r.status === 200) this.d.log.info({ room }, 'matrix: joined a room the bot was invited to');
      else
        this.d.log.warn(
          { room, problem: 'error' in r ? r.error : `http_${r.status}` },
          'matrix: could not join a room the bot was invited to',
        );
    }
  }

  /** The bot's user id: configured, or whoami (retried with backoff); undefined once aborted. */
  private async whoami(signal: AbortSignal): Promise<string | undefined> {
    if (this.d.userId) return this.d.userId;
    while (!signal.aborted) {
      const r = await this.call(whoamiCall(this.d.homeserverUrl, this.d.tokenSecret), signal, 15_000);
      if (signal.aborted) break;
      const v = 'error' in r ? ({ kind: 'retry', code: r.error } as const) : parseWhoami(r.status, r.body, r.retryAfter);
      if (v.kind === 'user') return v.userId;
      await this.fail(v, signal);
    }
    return undefined;
  }

  private async fail(verdict: FailureVerdict, signal: AbortSignal): Promise<void> {
    this.failures += 1;
    this.change('failing', verdict.code);
    const afterMs = verdict.kind === 'retry' ? verdict.afterMs : undefined;
    // A refused token will not fix itself quickly: wait the longest.
    const ms =
      verdict.kind === 'refused' ? this.d.maxBackoffMs : reconnectDelayMs(this.failures, this.d.backoffMs, this.d.maxBackoffMs, afterMs);
    await sleep(ms, undefined, { signal }).catch(() => undefined);
  }

  private async sync(since: string | undefined, timeoutMs: number, signal: AbortSignal): Promise<SyncVerdict> {
    const r = await this.call(syncCall(this.d.homeserverUrl, this.d.tokenSecret, since, timeoutMs), signal, timeoutMs + 15_000);
    return 'error' in r ? { kind: 'retry', code: r.error } : parseSync(r.status, r.body, r.retryAfter);
  }

  /** One call through egress (poll-call.ts). */
  private call(call: MatrixCall, signal: AbortSignal, timeoutMs: number): Promise<PollAnswer> {
    return pollCall(this.d.egress, call, signal, timeoutMs);
  }

  /** One log line per change of state or problem, never one per poll. */
  private change(state: State, problem: string, extra: Record<string, unknown> = {}): void {
    if (state === this.state && problem === this.problem) return;
    const was = this.problem;
    this.state = state;
    this.problem = problem;
    if (state === 'syncing') this.d.log.info({ after: was }, 'matrix sync recovered');
    else this.d.log.warn({ problem, ...extra }, 'matrix sync failing; retrying with backoff');
  }
}
