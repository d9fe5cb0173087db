// Slack Socket Mode, the runner: apps.connections.open through egress (the app-level token
// filled by egress), then the WebSocket it names, also through egress. Each events_api
// envelope goes through the webhook intake minus the signature (WebhookIngress.accept:
// parser, pairing, redaction, JetStream with the message's id) and is acknowledged only
// after that; Slack sends an unacknowledged envelope again and the message id drops a
// second copy. A `disconnect` envelope or a closed socket opens a new connection. Runs under
// a lease, one replica per app; logs only when the state changes.
import type WebSocket from 'ws';
import type { EgressRequest, EgressResponse } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { WebhookResult } from '../ingress.ts';
import { ackFrame, connectionsOpenCall, parseConnectionsOpen, parseEnvelope } from './slack-socket.ts';
import { pause } from './discord-gateway-runner.ts';
import { reconnectDelayMs } from './telegram-poll.ts';
import type { Channel } from './types.ts';

export interface SlackSocketDeps {
  egress: {
    request(req: EgressRequest): Promise<EgressResponse>;
    websocket(url: string, opts?: { maxPayload?: number }): Promise<WebSocket>;
  };
  intake: { accept(channel: Channel, raw: Buffer): Promise<WebhookResult> };
  log: Logger;
  apiUrl: string;
  appTokenSecret: string;
  maxPayload: number;
  backoffMs: number;
  maxBackoffMs: number;
}

type Ending = { kind: 'reconnect'; reason: string; afterMs?: number } | { kind: 'fatal'; reason: string } | { kind: 'stopped' };
export type SlackSocketStatus = 'connecting' | 'connected' | 'reconnecting' | 'fatal' | 'stopped';

export class SlackSocketRunner {
  private readonly d: SlackSocketDeps;
  private statusNow: SlackSocketStatus = 'stopped';
  private problem = '';
  private reached = false;

  constructor(deps: SlackSocketDeps) {
    this.d = deps;
  }

  get status(): { status: SlackSocketStatus; problem: string } {
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
      if (ending.kind === 'fatal') {
        this.change('fatal', ending.reason);
        await pause(this.d.maxBackoffMs, signal);
        continue;
      }
      this.change('reconnecting', ending.reason);
      // A requested refresh needs no pause; trouble backs off.
      const refresh = ending.reason.startsWith('disconnect (');
      await pause(refresh ? 0 : reconnectDelayMs(failures, this.d.backoffMs, this.d.maxBackoffMs, ending.afterMs), signal);
    }
    this.change('stopped', '');
  }

  private async open(signal: AbortSignal): Promise<ReturnType<typeof parseConnectionsOpen>> {
    const call = connectionsOpenCall(this.d.apiUrl, this.d.appTokenSecret);
    const res = await this.d.egress.request({ ...call, signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]) });
    let body = '';
    for await (const chunk of res.body as AsyncIterable<Buffer>) if (body.length < 65_536) body += chunk.toString('utf8');
    const ra = res.headers['retry-after'];
    return parseConnectionsOpen(res.status, body, typeof ra === 'string' ? ra : undefined);
  }

  /** One connection: open, then envelopes until the socket closes or Slack asks for a new one. */
  private async connection(signal: AbortSignal): Promise<Ending> {
    const opened = await this.open(signal);
    if (opened.kind === 'fatal') return opened;
    if (opened.kind === 'retry')
      return { kind: 'reconnect', reason: `apps.connections.open: ${opened.code}`, ...(opened.afterMs ? { afterMs: opened.afterMs } : {}) };
    const ws = await this.d.egress.websocket(opened.url, { maxPayload: this.d.maxPayload });
    return new Promise<Ending>((resolve) => {
      let done = false;
      const end = (e: Ending) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        if (ws.readyState === ws.OPEN) ws.close(1000);
        resolve(e);
      };
      const onAbort = () => end({ kind: 'stopped' });
      signal.addEventListener('abort', onAbort, { once: true });
      // Stopped while the socket was opening: the listener above came too late to hear it.
      if (signal.aborted) onAbort();
      let queue: Promise<void> = Promise.resolve();
      ws.on('message', (data) => {
        queue = queue.then(async () => {
          if (done) return;
          const env = parseEnvelope(String(data));
          if (env.kind === 'reconnect') return end({ kind: 'reconnect', reason: env.reason });
          if (env.kind === 'none') {
            this.reached = true;
            this.change('connected', '');
            return;
          }
          if (env.kind === 'event') {
            try {
              await this.d.intake.accept('slack', env.payload);
            } catch {
              // Not queued, not acknowledged: Slack sends it again.
              return;
            }
          }
          if (ws.readyState === ws.OPEN) ws.send(ackFrame(env.envelopeId));
        });
      });
      ws.on('close', (code) => void queue.then(() => end({ kind: 'reconnect', reason: `closed (${code})` })));
      ws.on('error', () => undefined);
      // egress.websocket hands the socket over paused: listening now, nothing was missed.
      ws.resume();
    });
  }

  private change(status: SlackSocketStatus, problem: string): void {
    if (status === this.statusNow && problem === this.problem) return;
    const was = this.statusNow;
    this.statusNow = status;
    this.problem = problem;
    const fields = { status, ...(problem ? { problem } : {}) };
    if (status === 'fatal') this.d.log.error(fields, 'slack socket mode stopped: fix the problem and it reconnects');
    else if (status === 'reconnecting') this.d.log.warn(fields, 'slack socket mode connection ended; reconnecting');
    else if (status === 'connected' && was !== 'connected') this.d.log.info(fields, 'slack socket mode connected');
  }
}
