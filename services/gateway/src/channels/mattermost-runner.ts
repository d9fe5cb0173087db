// Mattermost, the runner: GET /api/v4/users/me through egress (who the bot is), then the
// WebSocket API through egress with `Authorization: Bearer {{secret:NAME}}` on the upgrade
// (egress fills it; the gateway never holds the token). Frames are handled in order by the
// pure parser (mattermost.ts); each user's post goes through the intake after verification
// (WebhookIngress.acceptEvent: pairing, redaction, JetStream with the post id as message id,
// talon_inbound_seen), so a post seen twice is one turn. A post the intake could not queue is
// tried again with backoff while the connection lasts. The ping action (answered by the
// server, not by egress) proves the server is there; silence for two intervals reconnects.
// Mattermost does not replay events missed while disconnected: after a reconnect the runner
// asks each channel it saw a post in for the posts since the last one it took
// (GET /api/v4/channels/{id}/posts?since=), before any live event of the new connection. What it
// remembers lives in this process: a replica taking the lease over, or a restart, starts
// without it. Runs under a lease, one replica per bot; logs only when the state changes.
import type WebSocket from 'ws';
import type { EgressRequest, EgressResponse } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import { pause } from './discord-gateway-runner.ts';
import {
  channelPostsCall,
  mattermostAuthHeaders,
  mattermostPostEvent,
  parseChannelPosts,
  mattermostWebSocketUrl,
  parseMattermostFrame,
  parseUsersMe,
  pingFrame,
  usersMeCall,
  type MattermostBot,
  type PostPlace,
  type UsersMeVerdict,
} from './mattermost.ts';
import { reconnectDelayMs } from './telegram-poll.ts';
import type { InboundEvent } from './types.ts';

export interface MattermostDeps {
  egress: {
    request(req: EgressRequest): Promise<EgressResponse>;
    /** EgressClient.websocket: resolves with the socket paused. */
    websocket(url: string, opts?: { headers?: Record<string, string>; maxPayload?: number }): Promise<WebSocket>;
  };
  /** The intake after verification: pairing, redaction, JetStream (WebhookIngress.acceptEvent). */
  intake: { acceptEvent(ev: InboundEvent): Promise<unknown> };
  log: Logger;
  /** TALON_MATTERMOST_URL. */
  serverUrl: string;
  tokenSecret: string;
  maxPayload: number;
  backoffMs: number;
  maxBackoffMs: number;
  /** How often the server is pinged (the connection is dropped after two silent intervals). */
  pingIntervalMs?: number;
  /** Attempts to queue one post before it is given up (logged). */
  intakeAttempts?: number;
  /** Channels remembered for the catch-up after a reconnect (the least recently active are forgotten). */
  maxChannels?: number;
}

type Ending = { kind: 'reconnect'; reason: string; afterMs?: number } | { kind: 'fatal'; reason: string } | { kind: 'stopped' };
export type MattermostStatus = 'connecting' | 'connected' | 'reconnecting' | 'fatal' | 'stopped';

export class MattermostRunner {
  private readonly d: MattermostDeps;
  private statusNow: MattermostStatus = 'stopped';
  private problem = '';
  private reached = false;
  private bot: MattermostBot | undefined;
  /** The channels posts came from, with their newest create_at taken: what a reconnect catches up on. */
  private readonly places = new Map<string, PostPlace>();

  constructor(deps: MattermostDeps) {
    this.d = deps;
  }

  get status(): { status: MattermostStatus; problem: string } {
    return { status: this.statusNow, problem: this.problem };
  }

  /** Connects and reconnects until `signal` aborts (shutdown or a lost lease). Never throws for platform trouble. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      this.change('connecting', '');
      this.reached = false;
      const ending: Ending = await this.connection(signal).catch((err: unknown): Ending => ({
        kind: 'reconnect',
        reason: err instanceof TalonError ? `${err.code}: ${err.message}` : (err as Error).message,
      }));
      if (ending.kind === 'stopped' || signal.aborted) break;
      failures = this.reached ? 1 : failures + 1;
      // Never got as far as the hello (a refused upgrade, say a revoked token): ask users/me again, which tells.
      if (!this.reached) this.bot = undefined;
      if (ending.kind === 'fatal') {
        // Only the operator can fix it (a wrong token): try again rarely, so a fix needs no restart.
        this.change('fatal', ending.reason);
        await pause(this.d.maxBackoffMs, signal);
        continue;
      }
      this.change('reconnecting', ending.reason);
      await pause(reconnectDelayMs(failures, this.d.backoffMs, this.d.maxBackoffMs, ending.afterMs), signal);
    }
    this.change('stopped', '');
  }

  private async me(signal: AbortSignal): Promise<UsersMeVerdict> {
    const call = usersMeCall(this.d.serverUrl, this.d.tokenSecret);
    const res = await this.d.egress.request({ ...call, signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]) });
    let body = '';
    for await (const chunk of res.body as AsyncIterable<Buffer>) if (body.length < 65_536) body += chunk.toString('utf8');
    const ra = res.headers['retry-after'];
    return parseUsersMe(res.status, body, typeof ra === 'string' ? ra : undefined);
  }

  /** One connection: who the bot is (once), then frames until the socket closes or goes silent. */
  private async connection(signal: AbortSignal): Promise<Ending> {
    if (!this.bot) {
      const me = await this.me(signal);
      if (me.kind === 'fatal') return me;
      if (me.kind === 'retry')
        return { kind: 'reconnect', reason: `users/me: ${me.code}`, ...(me.afterMs !== undefined ? { afterMs: me.afterMs } : {}) };
      this.bot = { userId: me.userId, username: me.username };
    }
    const bot = this.bot;
    const ws = await this.d.egress.websocket(mattermostWebSocketUrl(this.d.serverUrl), {
      headers: mattermostAuthHeaders(this.d.tokenSecret),
      maxPayload: this.d.maxPayload,
    });
    const interval = this.d.pingIntervalMs ?? 30_000;
    const attempts = this.d.intakeAttempts ?? 8;
    return new Promise<Ending>((resolve) => {
      let done = false;
      let lastHeard = Date.now();
      let actionSeq = 0;
      let lastSeq: number | undefined;
      const end = (e: Ending) => {
        if (done) return;
        done = true;
        clearInterval(ticker);
        signal.removeEventListener('abort', onAbort);
        if (ws.readyState === ws.OPEN) ws.close(1000);
        else if (ws.readyState === ws.CONNECTING) ws.terminate();
        resolve(e);
      };
      const onAbort = () => end({ kind: 'stopped' });
      signal.addEventListener('abort', onAbort, { once: true });
      const ticker = setInterval(() => {
        if (Date.now() - lastHeard > 2 * interval) {
          ws.terminate();
          return end({ kind: 'reconnect', reason: 'no answer to ping' });
        }
        if (ws.readyState === ws.OPEN) ws.send(pingFrame(++actionSeq));
      }, interval);
      ticker.unref();
      // Stopped while the socket was opening: the listener above came too late to hear it.
      if (signal.aborted) onAbort();
      const accept = async (ev: InboundEvent): Promise<boolean> => {
        for (let i = 1; !done; i++) {
          try {
            await this.d.intake.acceptEvent(ev);
            return true;
          } catch (err) {
            if (i >= attempts) {
              const why = err instanceof TalonError ? err.code : 'error';
              this.d.log.error({ dedupe_id: ev.dedupeId, err: why }, 'mattermost post could not be queued; given up');
              return false;
            }
            await pause(reconnectDelayMs(i, this.d.backoffMs, this.d.maxBackoffMs), signal);
          }
        }
        return false;
      };
      // Frames are handled one after another, in the order the server sent them.
      let queue: Promise<void> = Promise.resolve();
      ws.on('message', (data) => {
        lastHeard = Date.now();
        queue = queue.then(async () => {
          if (done) return;
          const frame = parseMattermostFrame(String(data), bot);
          if (frame.seq !== undefined) {
            if (frame.kind !== 'hello' && lastSeq !== undefined && frame.seq > lastSeq + 1)
              this.d.log.warn(
                { from: lastSeq + 1, to: frame.seq - 1 },
                'mattermost skipped events (its buffer overflowed); those posts are not seen',
              );
            lastSeq = frame.seq;
          }
          if (frame.kind === 'hello') {
            this.reached = true;
            this.change('connected', '');
            await this.catchUp(bot, accept, signal);
          } else if (frame.kind === 'message') {
            if (await accept(frame.event)) this.took(frame.at);
          }
        });
      });
      ws.on('close', (code) => void queue.then(() => end({ kind: 'reconnect', reason: `closed (${code})` })));
      ws.on('error', () => undefined);
      // egress.websocket hands the socket over paused: listening now, nothing was missed.
      ws.resume();
    });
  }

  /** Remembers the newest post taken from a channel (most recently active channel last). */
  private took(at: PostPlace): void {
    if (!at.channelId || at.createAt <= 0) return;
    const was = this.places.get(at.channelId);
    this.places.delete(at.channelId);
    this.places.set(at.channelId, { ...at, createAt: Math.max(at.createAt, was?.createAt ?? 0) });
    const max = this.d.maxChannels ?? 1000;
    for (const key of this.places.keys()) {
      if (this.places.size <= max) break;
      this.places.delete(key);
    }
  }

  /** After a reconnect: the posts made in known channels since the newest taken, oldest first, through the intake. */
  private async catchUp(bot: MattermostBot, accept: (ev: InboundEvent) => Promise<boolean>, signal: AbortSignal): Promise<void> {
    let failed = 0;
    for (const place of [...this.places.values()]) {
      if (signal.aborted) return;
      try {
        const call = channelPostsCall(this.d.serverUrl, this.d.tokenSecret, place.channelId, place.createAt);
        const res = await this.d.egress.request({ ...call, signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]) });
        let body = '';
        for await (const chunk of res.body as AsyncIterable<Buffer>) if (body.length < 4_194_304) body += chunk.toString('utf8');
        const got = parseChannelPosts(res.status, body, place.createAt);
        if (got.kind === 'failed') {
          failed += 1;
          continue;
        }
        for (const { post, createAt } of got.posts) {
          const out = mattermostPostEvent(post, place.channelType, '', bot);
          if (out.kind !== 'message') continue;
          // Taken already (before the drop) or now: the post id makes it one turn either way.
          if (!(await accept(out.event))) break;
          this.took({ ...place, createAt });
        }
      } catch {
        failed += 1;
      }
    }
    if (failed > 0)
      this.d.log.warn(
        { channels: failed },
        'mattermost catch-up after the reconnect failed for some channels; posts made meanwhile there are not seen',
      );
  }

  private change(status: MattermostStatus, problem: string): void {
    if (status === this.statusNow && problem === this.problem) return;
    const was = this.statusNow;
    this.statusNow = status;
    this.problem = problem;
    const fields = { status, ...(problem ? { problem } : {}) };
    if (status === 'fatal') this.d.log.error(fields, 'mattermost stopped: fix the problem and it reconnects');
    else if (status === 'reconnecting') this.d.log.warn(fields, 'mattermost connection ended; reconnecting');
    else if (status === 'connected' && was !== 'connected') this.d.log.info(fields, 'mattermost connected');
  }
}
