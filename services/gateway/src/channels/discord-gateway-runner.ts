// The Discord Gateway, the runner: one WebSocket at a time through egress (the token is a
// placeholder egress fills inside the IDENTIFY/RESUME frame), payloads handled in order by
// the pure session (discord-gateway.ts), each message handed to the intake, and only then
// its sequence number committed. A message the intake could not queue is not committed: the
// runner reconnects and RESUMEs from the last committed sequence, Discord replays what
// followed, and the message id (JetStream's duplicate window, talon_inbound_seen) drops any
// second copy. Like the Telegram poller it runs under a lease, one replica per bot, and
// keeps its session (id, resume URL, last committed sequence) in KV talon_channel_state, so a
// restarted gateway or the next lease holder RESUMEs and Discord replays what was sent while
// no replica held the connection. The stored sequence trails the committed one (written in
// the background, latest wins), so a crash replays, never loses.
// Logs only when the connection's state changes.
import type WebSocket from 'ws';
import type { KV } from '@nats-io/kv';
import { EgressRefusal } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import {
  decodeSession,
  discordSessionKey,
  DiscordGatewaySession,
  encodeSession,
  SESSION_REFRESH_MS,
  type GatewayAction,
  type SavedDiscordSession,
} from './discord-gateway.ts';
import { reconnectDelayMs } from './telegram-poll.ts';
import type { InboundEvent } from './types.ts';

/** Where the session is kept between connections, restarts and lease holders. */
export interface SessionStore {
  load(): Promise<SavedDiscordSession | undefined>;
  /** undefined: the session was invalidated; forget it. */
  save(s: SavedDiscordSession | undefined): Promise<void>;
}

/** The session in NATS KV (talon_channel_state), under the bot's key. */
export function kvSessionStore(kv: KV, tokenSecret: string, now: () => number = Date.now): SessionStore {
  const key = discordSessionKey(tokenSecret);
  return {
    async load() {
      const e = await kv.get(key);
      if (!e || e.operation !== 'PUT') return undefined;
      return decodeSession(e.value, e.created.getTime(), now());
    },
    async save(s) {
      if (s) await kv.put(key, encodeSession(s));
      else await kv.delete(key);
    },
  };
}

export interface DiscordGatewayDeps {
  /** Opens a WebSocket through egress (EgressClient.websocket), paused until resumed; rejects with egress's refusal. */
  connect(url: string): Promise<WebSocket>;
  /** The intake after verification: pairing, redaction, JetStream (WebhookIngress.acceptEvent). */
  intake: { acceptEvent(ev: InboundEvent): Promise<unknown> };
  /** Keeps the session across restarts and lease handovers; without it every start IDENTIFYs afresh. */
  sessions?: SessionStore;
  log: Logger;
  /** wss://gateway.discord.gg (the query is added here). */
  gatewayUrl: string;
  tokenSecret: string;
  backoffMs: number;
  maxBackoffMs: number;
  random?: () => number;
}

/** How one connection ended: what to do next. */
type Ending = { kind: 'reconnect'; resume: boolean; reason: string } | { kind: 'fatal'; reason: string } | { kind: 'stopped' };

export type DiscordGatewayStatus = 'connecting' | 'connected' | 'reconnecting' | 'fatal' | 'stopped';

/** Close code sent when Talon drops a connection it wants to resume (1000/1001 would end the session). */
const CLOSE_RESUMABLE = 4000;

export class DiscordGatewayRunner {
  private readonly d: DiscordGatewayDeps;
  private readonly session: DiscordGatewaySession;
  private statusNow: DiscordGatewayStatus = 'stopped';
  private problem = '';
  /** The current connection received a dispatch (it was identified or resumed). */
  private reached = false;
  /** The session as last written to the store (JSON), and the write in flight. */
  private stored = '';
  private storedAtMs = 0;
  private saving: Promise<void> | undefined;
  private saveProblem = false;

  constructor(deps: DiscordGatewayDeps) {
    this.d = deps;
    this.session = new DiscordGatewaySession({ tokenSecret: deps.tokenSecret, ...(deps.random ? { random: deps.random } : {}) });
  }

  get status(): { status: DiscordGatewayStatus; problem: string } {
    return { status: this.statusNow, problem: this.problem };
  }

  /** Connects and reconnects until `signal` aborts (shutdown or a lost lease). Never throws for platform trouble. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    let resume = true;
    if (this.d.sessions) {
      const saved = await this.d.sessions.load().catch((err: unknown) => {
        this.d.log.warn({ err: (err as Error).message }, 'discord gateway: stored session unreadable; identifying afresh');
        return undefined;
      });
      if (saved) {
        this.session.restore(saved);
        this.stored = JSON.stringify(saved);
        this.d.log.info({ seq: saved.seq }, 'discord gateway: resuming the stored session');
      }
    }
    while (!signal.aborted) {
      this.change('connecting', '');
      this.reached = false;
      const ending: Ending = await this.connection(resume, signal).catch((err: unknown): Ending => ({
        kind: 'reconnect',
        // Egress refused the upgrade (say, a resume URL on a host the policy does not allow): identify afresh.
        resume: !(err instanceof EgressRefusal),
        reason: err instanceof TalonError ? `${err.code}: ${err.message}` : (err as Error).message,
      }));
      if (ending.kind === 'stopped' || signal.aborted) break;
      // A connection that got as far as a dispatch starts the backoff over.
      failures = this.reached ? 1 : failures + 1;
      if (ending.kind === 'fatal') {
        // Only the operator can fix it (a wrong token, a missing intent): try again rarely, so a fix needs no restart.
        this.change('fatal', ending.reason);
        await pause(this.d.maxBackoffMs, signal);
        resume = false;
        continue;
      }
      resume = ending.resume;
      this.change('reconnecting', ending.reason);
      await pause(reconnectDelayMs(failures, this.d.backoffMs, this.d.maxBackoffMs, 0, this.d.random), signal);
    }
    // What was committed is written before the lease is released (the next holder resumes from it).
    await this.persist();
    this.change('stopped', '');
  }

  /**
   * Writes the session if it changed since the last write (or that write is SESSION_REFRESH_MS
   * old: an idle connection's heartbeats keep the stored age short); one write at a time, the
   * latest state wins. Resolves when the store holds what the session was when called (or failed).
   */
  private persist(): Promise<void> {
    if (!this.d.sessions) return Promise.resolve();
    const write = async (): Promise<void> => {
      while (true) {
        const now = this.session.saved();
        const json = now ? JSON.stringify(now) : '';
        if (json === this.stored && (json === '' || Date.now() - this.storedAtMs < SESSION_REFRESH_MS)) return;
        try {
          await this.d.sessions!.save(now);
          this.stored = json;
          this.storedAtMs = Date.now();
          if (this.saveProblem) this.d.log.info({}, 'discord gateway: session stored again');
          this.saveProblem = false;
        } catch (err) {
          // The messages are queued; a stale stored sequence only means a longer replay (deduplicated).
          if (!this.saveProblem)
            this.d.log.warn({ err: (err as Error).message }, 'discord gateway: session not stored; retried with the next dispatch');
          this.saveProblem = true;
          return;
        }
      }
    };
    this.saving ??= write().finally(() => {
      this.saving = undefined;
    });
    return this.saving;
  }

  /** One connection, from upgrade to close. */
  private async connection(resume: boolean, signal: AbortSignal): Promise<Ending> {
    const ws = await this.d.connect(this.session.connectUrl(this.d.gatewayUrl, resume));
    const timers: NodeJS.Timeout[] = [];
    return new Promise<Ending>((resolve) => {
      let done = false;
      const end = (e: Ending, closeCode?: number) => {
        if (done) return;
        done = true;
        for (const t of timers) clearTimeout(t);
        signal.removeEventListener('abort', onAbort);
        if (closeCode !== undefined && ws.readyState === ws.OPEN) ws.close(closeCode);
        resolve(e);
      };
      const onAbort = () => end({ kind: 'stopped' }, 1000);
      signal.addEventListener('abort', onAbort, { once: true });
      // Stopped while the socket was opening: the listener above came too late to hear it.
      if (signal.aborted) onAbort();
      // Payloads are handled one after another: a message is committed only after the intake took it.
      let queue: Promise<void> = Promise.resolve();
      const perform = async (actions: GatewayAction[]): Promise<boolean> => {
        for (const a of actions) {
          if (done) return false;
          switch (a.kind) {
            case 'send':
              ws.send(JSON.stringify(a.payload));
              break;
            case 'heartbeat': {
              const beat = () => {
                if (done) return;
                void perform(this.session.heartbeatDue());
                timers.push(setTimeout(beat, a.everyMs));
              };
              timers.push(setTimeout(beat, a.firstMs));
              break;
            }
            case 'message':
              try {
                await this.d.intake.acceptEvent(a.event);
              } catch (err) {
                // Not queued, so not committed: resume replays it.
                const why = err instanceof TalonError ? `intake_${err.code}` : 'intake_error';
                end({ kind: 'reconnect', resume: true, reason: why }, CLOSE_RESUMABLE);
                return false;
              }
              break;
            case 'reconnect':
              end(a, CLOSE_RESUMABLE);
              return false;
            case 'fatal':
              end(a, 1000);
              return false;
          }
        }
        return true;
      };
      ws.on('message', (data) => {
        queue = queue.then(async () => {
          if (done) return;
          let payload: unknown;
          try {
            payload = JSON.parse(String(data));
          } catch {
            return;
          }
          const { actions, seq } = this.session.onPayload(payload);
          const ok = await perform(actions);
          if (ok && seq !== undefined) this.session.commit(seq);
          // In the background: the next dispatch is not held up by the store.
          void this.persist();
          if ((payload as { t?: unknown }).t !== undefined) {
            this.reached = true;
            this.change('connected', '');
          }
        });
      });
      ws.on('close', (code) => {
        // Let what was received be handled first, then decide.
        void queue.then(() => {
          const [a] = this.session.onClose(code);
          end(
            a && a.kind !== 'send' && a.kind !== 'heartbeat' && a.kind !== 'message'
              ? a
              : { kind: 'reconnect', resume: true, reason: `closed (${code})` },
          );
        });
      });
      ws.on('error', () => undefined);
      // connect() hands the socket over paused (EgressClient.websocket): listening now, nothing was missed.
      ws.resume();
    });
  }

  private change(status: DiscordGatewayStatus, problem: string): void {
    if (status === this.statusNow && problem === this.problem) return;
    const was = this.statusNow;
    this.statusNow = status;
    this.problem = problem;
    const fields = { status, ...(problem ? { problem } : {}), ...this.session.state };
    if (status === 'fatal') this.d.log.error(fields, 'discord gateway stopped: fix the problem and it reconnects');
    else if (status === 'reconnecting') this.d.log.warn(fields, 'discord gateway connection lost; reconnecting');
    else if (status === 'connected' && was !== 'connected') this.d.log.info(fields, 'discord gateway connected');
  }
}

/** Waits `ms` (nothing for 0), or less when `signal` aborts; never rejects. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** KV key of the lease under which one gateway replica holds a bot's Gateway connection. */
export function discordLeaseKey(tokenSecret: string): string {
  return `lease.gateway.discord.${tokenSecret}`;
}
