// Fakes of Telegram, Slack and Discord for tests: real HTTP servers on loopback
// speaking each platform's wire format for the calls Talon makes (sendMessage,
// chat.postMessage, channel messages), checking the bot token the way the real
// API does, and sending signed webhooks to the gateway the way the platforms do
// (Telegram's secret-token header, Slack's v0 HMAC, Discord's Ed25519) with real
// keys the test also stores in the vault. Failure modes: down, slow, 5xx, 429.
//
// startChannelPlatform() starts these fakes, a fake LLM and the whole platform
// with the egress policy and vault secrets the gateway needs.
import { createHmac, generateKeyPairSync, randomBytes, sign as edSign, type KeyObject } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { SERVICES, type ServiceName } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';
import { startFakeDiscordGateway, type FakeDiscordGateway } from './fake-discord-gateway.ts';
import { startFakeLlm, type FakeLlm, type FakeLlmBehaviour } from './fake-llm.ts';
import { startTestPlatform, type TestPlatform } from './harness.ts';

export interface RecordedCall {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  json: any;
  at: number;
}

/** How the fake answers the next API calls. */
export interface FakeMode {
  /** Answer this status (e.g. 502, 429) to the next `count` calls. */
  failNext?: { count: number; status: number; retryAfterS?: number };
  /** Delay every answer. */
  delayMs?: number;
  /** Reset every connection (platform unreachable). */
  down?: boolean;
}

export abstract class FakeServer {
  readonly calls: RecordedCall[] = [];
  mode: FakeMode = {};
  protected server!: Server;
  port = 0;
  private readonly sockets = new Set<Socket>();

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('connection', (s) => {
      if (this.mode.down) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }
    const call: RecordedCall = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, at: Date.now() };
    this.calls.push(call);
    if (this.mode.delayMs) await new Promise((r) => setTimeout(r, this.mode.delayMs));
    const f = this.mode.failNext;
    if (f && f.count > 0) {
      f.count -= 1;
      this.fail(res, f.status, f.retryAfterS);
      return;
    }
    this.handle(call, res);
  }

  protected send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  protected abstract fail(res: ServerResponse, status: number, retryAfterS?: number): void;
  protected abstract handle(call: RecordedCall, res: ServerResponse): void;

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function post(url: string, body: string, headers: Record<string, string>): Promise<{ status: number; text: string; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

// ---------------------------------------------------------------------------
// Telegram
// ---------------------------------------------------------------------------

export interface TelegramSent {
  chatId: number | string;
  text: string;
  messageId: number;
}

export class FakeTelegram extends FakeServer {
  readonly botToken = `${100000 + Math.floor(Math.random() * 899999)}:AA${randomBytes(16).toString('hex')}`;
  readonly webhookSecret = randomBytes(24).toString('hex');
  readonly sent: TelegramSent[] = [];
  private nextUpdate = 1000 + Math.floor(Math.random() * 1000);
  private nextMessage = 1;
  /** Updates queued for getUpdates and not yet confirmed (an offset above their id confirms them). */
  private readonly pending: Array<Record<string, unknown> & { update_id: number }> = [];
  /** The getUpdates request being held open, if any (Telegram allows one per bot). */
  private held: { answer: (conflict?: boolean) => void } | undefined;
  /** Set by setWebhook: getUpdates answers 409 while it is. */
  webhookUrl = '';
  /** getUpdates requests ended by a newer one (two pollers at once): each is a 409 the bot got. */
  pollConflicts = 0;
  /** Update ids in each getUpdates answer, in order (one entry per answer that carried any). */
  readonly answered: number[][] = [];
  /** The highest offset a getUpdates sent: every update below it is confirmed. */
  confirmedOffset = 0;
  private readonly confirmWaiters: Array<{ id: number; resolve: () => void }> = [];

  /** Base URL for TALON_TELEGRAM_API_URL. */
  get apiUrl(): string {
    return this.origin;
  }

  protected fail(res: ServerResponse, status: number, retryAfterS?: number): void {
    if (status === 429) {
      this.send(res, 429, {
        ok: false,
        error_code: 429,
        description: `Too Many Requests: retry after ${retryAfterS ?? 1}`,
        parameters: { retry_after: retryAfterS ?? 1 },
      });
    } else this.send(res, status, { ok: false, error_code: status, description: 'Bad Gateway' });
  }

  protected handle(call: RecordedCall, res: ServerResponse): void {
    const m = /^\/bot([^/]+)\/(\w+)$/.exec(call.path);
    if (!m) return this.send(res, 404, { ok: false, error_code: 404, description: 'Not Found' });
    let token = m[1]!;
    try {
      token = decodeURIComponent(token);
    } catch {
      /* compare as sent */
    }
    if (token !== this.botToken) return this.send(res, 401, { ok: false, error_code: 401, description: 'Unauthorized' });
    if (call.method !== 'POST') return this.send(res, 404, { ok: false, error_code: 404, description: 'Not Found: method not found' });
    switch (m[2]) {
      case 'sendMessage':
        return this.sendMessage(call, res);
      case 'getUpdates':
        return this.getUpdates(call, res);
      case 'setWebhook':
        this.webhookUrl = String((call.json as { url?: unknown } | undefined)?.url ?? '');
        return this.send(res, 200, { ok: true, result: true, description: 'Webhook was set' });
      case 'deleteWebhook':
        this.webhookUrl = '';
        return this.send(res, 200, { ok: true, result: true, description: 'Webhook was deleted' });
      case 'getWebhookInfo':
        return this.send(res, 200, { ok: true, result: { url: this.webhookUrl, pending_update_count: this.pending.length } });
      default:
        return this.send(res, 404, { ok: false, error_code: 404, description: 'Not Found: method not found' });
    }
  }

  /** Queues an update for getUpdates (as Telegram does when a user writes to the bot); a held long poll answers at once. */
  queue(update: Record<string, unknown>): void {
    const id = update.update_id;
    if (typeof id !== 'number') throw new Error('an update needs a numeric update_id');
    this.pending.push({ ...update, update_id: id });
    this.pending.sort((a, b) => a.update_id - b.update_id);
    this.held?.answer();
  }

  /** Resolves once a getUpdates confirms `updateId` (an offset above it: the bot has taken it). */
  confirmed(updateId: number): Promise<void> {
    if (updateId < this.confirmedOffset) return Promise.resolve();
    return new Promise((resolve) => this.confirmWaiters.push({ id: updateId, resolve }));
  }

  /** Updates not yet confirmed by an offset. */
  get unconfirmed(): number {
    return this.pending.length;
  }

  /** getUpdates requests received so far. */
  get polls(): RecordedCall[] {
    return this.calls.filter((c) => c.path.endsWith('/getUpdates'));
  }

  /**
   * Telegram's long poll: updates below `offset` are confirmed and forgotten; the rest (up to
   * `limit`) are answered at once, else the request is held until one is queued or `timeout`
   * seconds pass. A second getUpdates ends the first with 409, as Telegram does.
   */
  private getUpdates(call: RecordedCall, res: ServerResponse): void {
    if (this.webhookUrl) {
      return this.send(res, 409, {
        ok: false,
        error_code: 409,
        description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
      });
    }
    const j = (call.json ?? {}) as { offset?: number; timeout?: number; limit?: number };
    if (typeof j.offset === 'number') {
      const offset = j.offset;
      while (this.pending.length > 0 && this.pending[0]!.update_id < offset) this.pending.shift();
      if (offset > this.confirmedOffset) {
        this.confirmedOffset = offset;
        for (let i = this.confirmWaiters.length - 1; i >= 0; i--) {
          const w = this.confirmWaiters[i]!;
          if (w.id < offset) {
            this.confirmWaiters.splice(i, 1);
            w.resolve();
          }
        }
      }
    }
    const limit = Math.min(100, Math.max(1, j.limit ?? 100));
    const timeoutS = Math.min(50, Math.max(0, j.timeout ?? 0));
    if (this.held) {
      this.pollConflicts += 1;
      this.held.answer(true);
    }
    const answer = (conflict = false) => {
      if (this.held === entry) this.held = undefined;
      clearTimeout(entry.timer);
      if (res.writableEnded || res.destroyed) return;
      if (conflict) {
        return this.send(res, 409, {
          ok: false,
          error_code: 409,
          description: 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running',
        });
      }
      const result = this.pending.slice(0, limit);
      if (result.length > 0) this.answered.push(result.map((u) => u.update_id));
      this.send(res, 200, { ok: true, result });
    };
    const entry: { answer: typeof answer; timer?: NodeJS.Timeout } = { answer };
    if (this.pending.length > 0 || timeoutS === 0) return answer();
    this.held = entry;
    entry.timer = setTimeout(() => answer(), timeoutS * 1000);
    res.on('close', () => {
      clearTimeout(entry.timer);
      if (this.held === entry) this.held = undefined;
    });
  }

  private sendMessage(call: RecordedCall, res: ServerResponse): void {
    const j = call.json as { chat_id?: number | string; text?: string } | undefined;
    if (!j || j.chat_id === undefined || typeof j.text !== 'string' || j.text === '') {
      return this.send(res, 400, { ok: false, error_code: 400, description: 'Bad Request: message text is empty' });
    }
    if (j.text.length > 4096) return this.send(res, 400, { ok: false, error_code: 400, description: 'Bad Request: message is too long' });
    const messageId = this.nextMessage++;
    this.sent.push({ chatId: j.chat_id, text: j.text, messageId });
    this.send(res, 200, {
      ok: true,
      result: { message_id: messageId, date: Math.floor(Date.now() / 1000), chat: { id: j.chat_id, type: 'private' }, text: j.text },
    });
  }

  /** An update carrying a private text message from `userId`. */
  message(
    userId: number,
    text: string,
    opts: { chatId?: number; firstName?: string; updateId?: number; isBot?: boolean } = {},
  ): Record<string, unknown> {
    const updateId = opts.updateId ?? this.nextUpdate++;
    return {
      update_id: updateId,
      message: {
        message_id: updateId * 10,
        from: { id: userId, is_bot: opts.isBot ?? false, first_name: opts.firstName ?? 'Tess', username: `user${userId}` },
        chat: { id: opts.chatId ?? userId, type: 'private', first_name: opts.firstName ?? 'Tess' },
        date: Math.floor(Date.now() / 1000),
        text,
      },
    };
  }

  /** POSTs an update to the gateway as Telegram does (secret token header). */
  async deliver(gatewayUrl: string, update: unknown, opts: { secret?: string | null; raw?: string } = {}) {
    const headers: Record<string, string> = {};
    const secret = opts.secret === undefined ? this.webhookSecret : opts.secret;
    if (secret !== null) headers['x-telegram-bot-api-secret-token'] = secret;
    return post(`${gatewayUrl}/hooks/telegram`, opts.raw ?? JSON.stringify(update), headers);
  }
}

// ---------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------

export interface SlackPosted {
  channel: string;
  text: string;
  threadTs?: string;
  ts: string;
}

export class FakeSlack extends FakeServer {
  readonly botToken = `xoxb-${randomBytes(6).toString('hex')}-${randomBytes(12).toString('hex')}`;
  readonly signingSecret = randomBytes(16).toString('hex');
  /** Socket Mode: the app-level token apps.connections.open wants. */
  readonly appToken = `xapp-1-A0TALON-${randomBytes(12).toString('hex')}`;
  readonly teamId = 'T0TALON1';
  readonly posted: SlackPosted[] = [];
  private seq = 1;
  /** Socket Mode: connections opened, envelopes acknowledged, the socket in use. */
  socketOpens = 0;
  /** Socket Mode connections established (the newest is the one messages go to). */
  socketConnections = 0;
  readonly acked = new Set<string>();
  private socket: WebSocket | undefined;
  private readonly sockets_ = new WebSocketServer({ noServer: true });

  override async start(): Promise<this> {
    await super.start();
    this.server.on('upgrade', (req, socket, head) => {
      if (!req.url?.startsWith('/link/?ticket=')) return socket.destroy();
      this.sockets_.handleUpgrade(req, socket, head, (ws) => {
        this.socket = ws;
        this.socketConnections += 1;
        ws.send(JSON.stringify({ type: 'hello', num_connections: 1, connection_info: { app_id: 'A0TALON' } }));
        ws.on('message', (d) => {
          const id = (JSON.parse(String(d)) as { envelope_id?: string }).envelope_id;
          if (id) this.acked.add(id);
        });
      });
    });
    return this;
  }

  /** Socket Mode: a message event in an envelope on the open socket; returns the envelope id. */
  socketMessage(user: string, channel: string, text: string, channelType = 'channel'): string {
    const envelopeId = randomBytes(8).toString('hex');
    const ts = `${Math.floor(Date.now() / 1000)}.${String(this.seq++).padStart(6, '0')}`;
    this.socket?.send(
      JSON.stringify({
        envelope_id: envelopeId,
        type: 'events_api',
        accepts_response_payload: false,
        retry_attempt: 0,
        payload: {
          type: 'event_callback',
          team_id: this.teamId,
          event_id: `Ev${envelopeId}`,
          event: { type: 'message', user, channel, text, ts, channel_type: channelType },
        },
      }),
    );
    return envelopeId;
  }

  /** Socket Mode: Slack asks the app to reconnect. */
  socketDisconnect(): void {
    this.socket?.send(JSON.stringify({ type: 'disconnect', reason: 'refresh_requested' }));
  }

  /** Base URL for TALON_SLACK_API_URL. */
  get apiUrl(): string {
    return `${this.origin}/api`;
  }

  protected fail(res: ServerResponse, status: number, retryAfterS?: number): void {
    if (status === 429) this.send(res, 429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(retryAfterS ?? 1) });
    else this.send(res, status, { ok: false, error: 'service_unavailable' });
  }

  protected handle(call: RecordedCall, res: ServerResponse): void {
    if (call.path === '/api/apps.connections.open' && call.method === 'POST') {
      if (call.headers.authorization !== `Bearer ${this.appToken}`) return this.send(res, 200, { ok: false, error: 'invalid_auth' });
      this.socketOpens += 1;
      return this.send(res, 200, {
        ok: true,
        url: `ws://127.0.0.1:${this.port}/link/?ticket=${randomBytes(8).toString('hex')}&app_id=A0TALON`,
      });
    }
    if (call.path !== '/api/chat.postMessage' || call.method !== 'POST') return this.send(res, 404, { ok: false, error: 'unknown_method' });
    if (call.headers.authorization !== `Bearer ${this.botToken}`) return this.send(res, 200, { ok: false, error: 'invalid_auth' });
    const j = call.json as { channel?: string; text?: string; thread_ts?: string } | undefined;
    if (!j?.channel) return this.send(res, 200, { ok: false, error: 'channel_not_found' });
    if (!j.text) return this.send(res, 200, { ok: false, error: 'no_text' });
    const ts = `${Math.floor(Date.now() / 1000)}.${String(this.seq++).padStart(6, '0')}`;
    this.posted.push({ channel: j.channel, text: j.text, ...(j.thread_ts ? { threadTs: j.thread_ts } : {}), ts });
    this.send(res, 200, { ok: true, channel: j.channel, ts, message: { text: j.text, ts } });
  }

  sign(ts: number, raw: string, secret = this.signingSecret): string {
    return `v0=${createHmac('sha256', secret).update(`v0:${ts}:${raw}`).digest('hex')}`;
  }

  /** An event_callback carrying a message from `user` in `channel`. */
  messageEvent(
    user: string,
    channel: string,
    text: string,
    opts: { ts?: string; threadTs?: string; channelType?: string; eventId?: string; botId?: string } = {},
  ) {
    const ts = opts.ts ?? `${Math.floor(Date.now() / 1000)}.${String(this.seq++).padStart(6, '0')}`;
    return {
      token: 'deprecated-verification-token',
      team_id: this.teamId,
      api_app_id: 'A0TALON',
      type: 'event_callback',
      event_id: opts.eventId ?? `Ev${randomBytes(5).toString('hex').toUpperCase()}`,
      event_time: Math.floor(Date.now() / 1000),
      event: {
        type: 'message',
        channel_type: opts.channelType ?? 'im',
        user,
        text,
        ts,
        channel,
        ...(opts.threadTs ? { thread_ts: opts.threadTs } : {}),
        ...(opts.botId ? { bot_id: opts.botId } : {}),
      },
    };
  }

  /** POSTs an Events API request signed as Slack does; override ts/signature to forge or replay. */
  async deliver(
    gatewayUrl: string,
    body: unknown,
    opts: { ts?: number; signature?: string; raw?: string; secret?: string; retryNum?: number } = {},
  ) {
    const raw = opts.raw ?? JSON.stringify(body);
    const ts = opts.ts ?? Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': opts.signature ?? this.sign(ts, raw, opts.secret),
    };
    if (opts.retryNum) {
      headers['x-slack-retry-num'] = String(opts.retryNum);
      headers['x-slack-retry-reason'] = 'http_timeout';
    }
    return post(`${gatewayUrl}/hooks/slack`, raw, headers);
  }
}

// ---------------------------------------------------------------------------
// Discord
// ---------------------------------------------------------------------------

export interface DiscordMessage {
  channelId: string;
  content: string;
  nonce?: string;
  id: string;
}

export class FakeDiscord extends FakeServer {
  readonly botToken = `${randomBytes(18).toString('base64url')}.${randomBytes(4).toString('base64url')}.${randomBytes(20).toString('base64url')}`;
  readonly applicationId = String(100000000000000000n + BigInt(Math.floor(Math.random() * 1e9)));
  readonly messages: DiscordMessage[] = [];
  private readonly privateKey: KeyObject;
  /** The application public key as 64 hex characters (what the developer portal shows). */
  readonly publicKeyHex: string;
  private nextId = 1n;
  private readonly byNonce = new Map<string, DiscordMessage>();

  constructor() {
    super();
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    this.privateKey = privateKey;
    const der = publicKey.export({ format: 'der', type: 'spki' });
    this.publicKeyHex = Buffer.from(der.subarray(der.length - 32)).toString('hex');
  }

  /** Base URL for TALON_DISCORD_API_URL. */
  get apiUrl(): string {
    return `${this.origin}/api/v10`;
  }

  protected fail(res: ServerResponse, status: number, retryAfterS?: number): void {
    if (status === 429) {
      this.send(
        res,
        429,
        { message: 'You are being rate limited.', retry_after: retryAfterS ?? 0.5, global: false },
        { 'retry-after': String(Math.ceil(retryAfterS ?? 1)) },
      );
    } else this.send(res, status, { message: 'Service Unavailable', code: 0 });
  }

  protected handle(call: RecordedCall, res: ServerResponse): void {
    const m = /^\/api\/v10\/channels\/(\d+)\/messages$/.exec(call.path);
    if (!m || call.method !== 'POST') return this.send(res, 404, { message: '404: Not Found', code: 0 });
    if (call.headers.authorization !== `Bot ${this.botToken}`) return this.send(res, 401, { message: '401: Unauthorized', code: 0 });
    const j = call.json as { content?: string; nonce?: string; enforce_nonce?: boolean } | undefined;
    if (!j?.content) return this.send(res, 400, { message: 'Cannot send an empty message', code: 50006 });
    if (j.content.length > 2000) return this.send(res, 400, { message: 'Invalid Form Body', code: 50035 });
    // Like Discord: with enforce_nonce, a repeated nonce returns the message already created.
    if (j.enforce_nonce && j.nonce && this.byNonce.has(j.nonce)) {
      const prev = this.byNonce.get(j.nonce)!;
      return this.send(res, 200, { id: prev.id, channel_id: prev.channelId, content: prev.content, nonce: prev.nonce });
    }
    const msg: DiscordMessage = {
      channelId: m[1]!,
      content: j.content,
      ...(j.nonce ? { nonce: j.nonce } : {}),
      id: String(1300000000000000000n + this.nextId++),
    };
    this.messages.push(msg);
    if (j.nonce) this.byNonce.set(j.nonce, msg);
    this.send(res, 200, { id: msg.id, channel_id: msg.channelId, content: msg.content, nonce: msg.nonce, type: 0 });
  }

  sign(ts: number, raw: string): string {
    return edSign(null, Buffer.from(`${ts}${raw}`), this.privateKey).toString('hex');
  }

  /** A slash-command interaction (type 2) from `userId` in `channelId`. */
  command(userId: string, channelId: string, text: string, opts: { id?: string; guild?: boolean } = {}) {
    const user = { id: userId, username: `user${userId.slice(-4)}`, global_name: 'Dee', bot: false };
    return {
      id: opts.id ?? String(1200000000000000000n + BigInt(Math.floor(Math.random() * 1e12))),
      application_id: this.applicationId,
      type: 2,
      token: randomBytes(24).toString('base64url'),
      version: 1,
      channel_id: channelId,
      ...(opts.guild === false ? { user } : { guild_id: '900000000000000001', member: { user, roles: [] } }),
      data: { id: '1', name: 'ask', type: 1, options: [{ name: 'prompt', type: 3, value: text }] },
    };
  }

  ping() {
    return { id: '1', application_id: this.applicationId, type: 1, token: 'x', version: 1 };
  }

  /** POSTs an interaction signed as Discord does; override ts/signature to forge. */
  async deliver(gatewayUrl: string, body: unknown, opts: { ts?: number; signature?: string; raw?: string } = {}) {
    const raw = opts.raw ?? JSON.stringify(body);
    const ts = opts.ts ?? Math.floor(Date.now() / 1000);
    return post(`${gatewayUrl}/hooks/discord`, raw, {
      'x-signature-ed25519': opts.signature ?? this.sign(ts, raw),
      'x-signature-timestamp': String(ts),
    });
  }
}

// ---------------------------------------------------------------------------
// Generic signed webhook sender and callback receiver
// ---------------------------------------------------------------------------

export class FakeWebhookPeer extends FakeServer {
  readonly signingSecret = randomBytes(24).toString('hex');
  readonly callbackToken = randomBytes(24).toString('hex');
  readonly received: Array<{
    id: string;
    part: number;
    parts: number;
    thread: string;
    text: string;
    error?: string;
    idempotencyKey: string;
  }> = [];

  get callbackUrl(): string {
    return `${this.origin}/talon/replies`;
  }

  protected fail(res: ServerResponse, status: number): void {
    this.send(res, status, { error: 'unavailable' });
  }

  protected handle(call: RecordedCall, res: ServerResponse): void {
    if (call.path !== '/talon/replies') return this.send(res, 404, { error: 'not found' });
    if (call.headers.authorization !== `Bearer ${this.callbackToken}`) return this.send(res, 401, { error: 'bad token' });
    const key = String(call.headers['idempotency-key'] ?? '');
    if (!this.received.some((r) => r.idempotencyKey === key)) this.received.push({ ...(call.json as any), idempotencyKey: key });
    this.send(res, 200, { ok: true });
  }

  sign(ts: number, raw: string, secret = this.signingSecret): string {
    return `sha256=${createHmac('sha256', secret).update(`${ts}.${raw}`).digest('hex')}`;
  }

  /** Signs and POSTs `body` (to /hooks/webhook, or `path`, e.g. a routine's /hooks/routine/<name>). */
  async deliver(gatewayUrl: string, body: unknown, opts: { ts?: number; signature?: string; raw?: string; path?: string } = {}) {
    const raw = opts.raw ?? JSON.stringify(body);
    const ts = opts.ts ?? Math.floor(Date.now() / 1000);
    return post(`${gatewayUrl}${opts.path ?? '/hooks/webhook'}`, raw, {
      'x-talon-timestamp': String(ts),
      'x-talon-signature': opts.signature ?? this.sign(ts, raw),
    });
  }
}

// ---------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------

export interface WsClient {
  ws: WebSocket;
  messages: any[];
  next(pred: (m: any) => boolean, timeoutMs?: number): Promise<any>;
  closed: Promise<{ code: number; reason: string }>;
}

/** A WebSocket client of /v1/ws collecting JSON messages (tests). */
export function openWs(
  url: string,
  opts: { origin?: string; protocols?: string[]; headers?: Record<string, string> } = {},
): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? ['talon.v1'], {
      ...(opts.origin ? { origin: opts.origin } : {}),
      headers: opts.headers ?? {},
    });
    const messages: any[] = [];
    const waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void }> = [];
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      messages.push(m);
      for (const w of [...waiters]) {
        if (w.pred(m)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    const closed = new Promise<{ code: number; reason: string }>((r) =>
      ws.on('close', (code, reason) => r({ code, reason: reason.toString() })),
    );
    ws.on('open', () =>
      resolve({
        ws,
        messages,
        closed,
        next(pred, timeoutMs = 15_000) {
          const have = messages.find(pred);
          if (have) return Promise.resolve(have);
          return new Promise((res, rej) => {
            const t = setTimeout(() => rej(new Error(`no matching message; got ${JSON.stringify(messages).slice(0, 500)}`)), timeoutMs);
            waiters.push({ pred, resolve: (m) => (clearTimeout(t), res(m)) });
          });
        },
      }),
    );
    ws.on('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.on('error', reject);
  });
}

// ---------------------------------------------------------------------------
// The whole platform wired for channels
// ---------------------------------------------------------------------------

export interface ChannelPlatform {
  tp: TestPlatform;
  llm: FakeLlm;
  telegram: FakeTelegram;
  slack: FakeSlack;
  discord: FakeDiscord;
  webhook: FakeWebhookPeer;
  /** With `discordGateway: true`: the Gateway the gateway connects to (messages arrive there). */
  discordGateway?: FakeDiscordGateway;
  gatewayUrl: string;
  /** Runs the real `talon` CLI against this platform; `input` goes to stdin. */
  talon(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

export interface ChannelPlatformOptions {
  llm?: FakeLlmBehaviour;
  /** Extra environment for every service (gateway tuning, limits). */
  env?: Record<string, string | undefined>;
  /** Store the platform secrets in the vault (default true). */
  storeSecrets?: boolean;
  services?: readonly ServiceName[];
  /** Processes per service (e.g. two gateways). */
  replicas?: Partial<Record<ServiceName, number>>;
  /** Discord by the Gateway (GATEWAY_DISCORD_MODE=gateway) against a fake Gateway, its token in the vault. */
  discordGateway?: boolean;
  /** Slack by Socket Mode (GATEWAY_SLACK_MODE=socket), the app-level token in the vault. */
  slackSocket?: boolean;
  /** More loopback fakes (e.g. FakeWhatsApp) the gateway may reach: egress policy and private allowance. */
  extraFakes?: ReadonlyArray<{ port: number }>;
  /** More vault secrets for principal gateway: name, value, `talon secrets set` flags. */
  extraSecrets?: ReadonlyArray<[string, string, string[]]>;
}

export const TEST_VAULT_PASSPHRASE = 'talon-test-passphrase-0123456789';

/**
 * Starts the fakes, a fake LLM and the platform with everything the gateway's
 * channels need: TALON_CHANNELS, the platform API URLs, egress policy and private
 * allowances for the fakes, an unsealed vault holding the bot tokens and webhook
 * keys (principal gateway), and the gateway's egress addresses.
 */
export async function startChannelPlatform(opts: ChannelPlatformOptions = {}): Promise<ChannelPlatform> {
  const telegram = await new FakeTelegram().start();
  const slack = await new FakeSlack().start();
  const discord = await new FakeDiscord().start();
  const webhook = await new FakeWebhookPeer().start();
  const llm = await startFakeLlm(opts.llm ?? {});
  const discordGateway = opts.discordGateway ? await startFakeDiscordGateway({ token: discord.botToken }) : undefined;
  const fakes = [telegram, slack, discord, webhook];
  const fakePorts = [
    ...fakes.map((f) => f.port),
    ...(discordGateway ? [discordGateway.port] : []),
    ...(opts.extraFakes ?? []).map((f) => f.port),
  ];
  const dir = mkdtempSync(join(tmpdir(), 'talon-channels-'));
  const policyFile = join(dir, 'egress-policy.json');
  writeFileSync(
    policyFile,
    JSON.stringify({ rules: fakePorts.map((port) => ({ principal: 'gateway', host: '127.0.0.1', port, methods: ['POST', 'GET'] })) }),
  );
  const services = opts.services ?? SERVICES;
  const env: Record<string, string | undefined> = {
    TALON_LLM_BASE_URL: llm.url,
    TALON_LLM_MODEL: 'fake-model',
    TALON_LLM_API_KEY_SECRET: 'none',
    TALON_EGRESS_ALLOW_PRIVATE: [llm.port, ...fakePorts].map((p) => `127.0.0.1:${p}`).join(','),
    EGRESS_POLICY_FILE: policyFile,
    TALON_VAULT_PASSPHRASE: TEST_VAULT_PASSPHRASE,
    TALON_CHANNELS: 'telegram,slack,discord,webhook',
    TALON_TELEGRAM_API_URL: telegram.apiUrl,
    TALON_SLACK_API_URL: slack.apiUrl,
    TALON_DISCORD_API_URL: discord.apiUrl,
    TALON_WEBHOOK_CALLBACK_URL: webhook.callbackUrl,
    // The suites built on this drive Telegram by webhook; long polling suites set `polling`.
    GATEWAY_TELEGRAM_MODE: 'webhook',
    // And Discord by interactions (slash commands); the Gateway suite sets `gateway`.
    GATEWAY_DISCORD_MODE: discordGateway ? 'gateway' : 'interactions',
    // And Slack by the Events API; the Socket Mode suite sets `socket`.
    GATEWAY_SLACK_MODE: opts.slackSocket ? 'socket' : 'events',
    ...(discordGateway ? { TALON_DISCORD_GATEWAY_URL: discordGateway.url, GATEWAY_CHANNEL_RECONNECT_BACKOFF_MS: '100' } : {}),
    GATEWAY_DELIVERY_BACKOFF_MS: '200',
    GATEWAY_DELIVERY_MAX_BACKOFF_MS: '2000',
    ...opts.env,
  };
  // The gateway needs egress's ports, which the harness picks: start it last.
  let tp: TestPlatform;
  try {
    tp = await startTestPlatform({
      services: services.filter((s) => s !== 'gateway'),
      llm: false,
      env,
      ...(opts.replicas ? { replicas: opts.replicas } : {}),
    });
  } catch (err) {
    await llm.close();
    for (const f of fakes) await f.close();
    await discordGateway?.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const platformEnv = tp.platform.opts.env!;
  platformEnv.GATEWAY_EGRESS_URL ??= tp.platform.egressProxyUrl;
  platformEnv.GATEWAY_EGRESS_ADDR ??= `127.0.0.1:${tp.ports.grpc.egress}`;

  const talon = (args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((resolve, reject) => {
      const childEnv: Record<string, string | undefined> = {
        ...process.env,
        TALON_HOME: tp.home,
        TALON_NATS_URL: tp.platform.natsUrl,
        VAULT_GRPC_PORT: String(tp.ports.grpc.vault),
      };
      delete childEnv.TALON_VAULT_PASSPHRASE;
      const child = spawn(process.execPath, [join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts'), ...args], {
        cwd: tp.home,
        env: childEnv,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input);
    });

  const stop = async () => {
    await tp.stop();
    await llm.close();
    for (const f of fakes) await f.close();
    await discordGateway?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (opts.storeSecrets !== false && services.includes('vault')) {
      const host = (p: number) => `127.0.0.1:${p}`;
      // Verification keys are stored verify-only: the vault checks signatures with them and
      // never releases them, so they are bound to no host and no placement.
      const verify = (): string[] => ['--verify'];
      const secrets: Array<[string, string, string[]]> = [
        ['telegram_bot_token', telegram.botToken, ['--host', host(telegram.port), '--path']],
        ['telegram_webhook_secret', telegram.webhookSecret, verify()],
        ['slack_bot_token', slack.botToken, ['--host', host(slack.port), '--bearer']],
        ['slack_signing_secret', slack.signingSecret, verify()],
        ['discord_bot_token', discord.botToken, ['--host', host(discord.port), '--header', 'authorization']],
        ['discord_public_key', discord.publicKeyHex, verify()],
        ['webhook_signing_secret', webhook.signingSecret, verify()],
        ['webhook_callback_token', webhook.callbackToken, ['--host', host(webhook.port), '--bearer']],
        ...(opts.slackSocket
          ? [['slack_app_token', slack.appToken, ['--host', host(slack.port), '--bearer']] as [string, string, string[]]]
          : []),
        // The same bot token again for the Gateway's IDENTIFY frame (a placement of its own).
        ...(discordGateway
          ? [['discord_gateway_token', discord.botToken, ['--host', host(discordGateway.port), '--ws-frame']] as [string, string, string[]]]
          : []),
        ...(opts.extraSecrets ?? []),
      ];
      for (const [name, value, flags] of secrets) {
        const r = await talon(['secrets', 'set', name, ...flags, '--principal', 'gateway'], value);
        if (r.code !== 0) throw new Error(`talon secrets set ${name} failed (${r.code}): ${r.stderr}`);
      }
    }
    if (services.includes('gateway')) {
      tp.platform.startService('gateway');
      await tp.platform.waitHealthy(['gateway']);
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return {
    tp,
    llm,
    telegram,
    slack,
    discord,
    webhook,
    ...(discordGateway ? { discordGateway } : {}),
    gatewayUrl: tp.gatewayUrl,
    talon,
    stop,
  };
}
