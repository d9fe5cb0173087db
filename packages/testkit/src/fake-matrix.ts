// A fake Matrix homeserver for tests: a real HTTP server on loopback speaking the client-server
// API (v3) for the calls Talon makes — account/whoami, /sync (initial and incremental, rooms.join
// timelines and rooms.invite, next_batch stream tokens, the long-poll timeout honoured, the
// filter's timeline limit), PUT rooms/{roomId}/send/{eventType}/{txnId} (idempotent per access
// token and transaction id, as Synapse is) and rooms/{roomId}/join — checking the bearer access
// token the way a homeserver does (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN). The test stores the
// same token in the vault. Failure modes: 5xx or 429 M_LIMIT_EXCEEDED for the next calls, and a
// send recorded but answered 502 (the answer lost: the client's retry must reuse its txnId).
import { randomBytes } from 'node:crypto';
import { randomChars } from './random-chars.ts';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface MatrixCall {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  json: any;
  at: number;
}

export interface MatrixSent {
  roomId: string;
  txnId: string;
  eventId: string;
  msgtype: unknown;
  body: unknown;
}

export interface FakeMatrixMode {
  /** Answer this status (502, 429…) to the next `count` authenticated calls. */
  failNext?: { count: number; status: number; retryAfterMs?: number };
  /** Record the next `count` new sends, then answer them 502 (the answer is lost on the way back). */
  loseSendAnswers?: number;
}

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BASE62 = `0123456789${LETTERS}`;

type Entry =
  | { pos: number; roomId: string; kind: 'timeline'; event: Record<string, unknown> }
  | { pos: number; roomId: string; kind: 'invite'; sender: string };

export class FakeMatrix {
  readonly serverName = 'matrix.test';
  /**
   * As Synapse writes them: `syt_`, the base64 localpart, 20 random letters, a 6-character
   * base62 check. The parts hold no `_`, so a test can look for the random part alone.
   */
  readonly accessToken = `syt_dGFsb24_${randomChars(20, LETTERS)}_${randomChars(6, BASE62)}`;
  readonly userId = '@talon:matrix.test';
  readonly calls: MatrixCall[] = [];
  readonly sent: MatrixSent[] = [];
  mode: FakeMatrixMode = {};
  port = 0;
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  private pos = 0;
  private readonly log: Entry[] = [];
  private readonly joined = new Set<string>();
  private readonly invited = new Set<string>();
  private readonly txns = new Map<string, string>();
  private readonly waiters = new Set<() => void>();

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  /** Base URL for TALON_MATRIX_HOMESERVER_URL. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const w of this.waiters) w();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** /sync requests so far. */
  get syncs(): MatrixCall[] {
    return this.calls.filter((c) => c.path === '/_matrix/client/v3/sync');
  }

  /** The stream token after everything so far (what an initial sync now would answer as next_batch). */
  get token(): string {
    return `s${this.pos}`;
  }

  /** A room the bot is joined to (its membership event in the timeline). */
  room(name = randomBytes(6).toString('hex')): string {
    const roomId = `!${name}:${this.serverName}`;
    if (!this.joined.has(roomId)) this.joinBot(roomId);
    return roomId;
  }

  /** A message from `sender` in `roomId` (msgtype m.text unless told); returns its event id. */
  message(
    roomId: string,
    sender: string,
    body: string,
    opts: { msgtype?: string; type?: string; content?: Record<string, unknown> } = {},
  ): string {
    return this.append(roomId, {
      type: opts.type ?? 'm.room.message',
      sender,
      content: opts.content ?? { msgtype: opts.msgtype ?? 'm.text', body },
    });
  }

  /** An end-to-end encrypted event (megolm ciphertext) from `sender`. */
  encrypted(roomId: string, sender: string): string {
    return this.message(roomId, sender, '', {
      type: 'm.room.encrypted',
      content: {
        algorithm: 'm.megolm.v1.aes-sha2',
        ciphertext: randomBytes(48).toString('base64'),
        device_id: 'ABCDEF',
        sender_key: randomBytes(32).toString('base64'),
        session_id: randomBytes(32).toString('base64'),
      },
    });
  }

  /** `sender` invites the bot to a new room; returns the room id. */
  invite(sender: string): string {
    const roomId = `!${randomBytes(6).toString('hex')}:${this.serverName}`;
    this.invited.add(roomId);
    this.log.push({ pos: ++this.pos, roomId, kind: 'invite', sender });
    this.wake();
    return roomId;
  }

  isJoined(roomId: string): boolean {
    return this.joined.has(roomId);
  }

  private joinBot(roomId: string): void {
    this.joined.add(roomId);
    this.invited.delete(roomId);
    this.append(roomId, { type: 'm.room.member', sender: this.userId, state_key: this.userId, content: { membership: 'join' } });
  }

  private append(roomId: string, e: Record<string, unknown>): string {
    const eventId = `$${randomBytes(32).toString('base64url').slice(0, 43)}`;
    this.log.push({
      pos: ++this.pos,
      roomId,
      kind: 'timeline',
      event: { ...e, event_id: eventId, origin_server_ts: Date.now(), unsigned: { age: 0 } },
    });
    this.wake();
    return eventId;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    const u = new URL(req.url ?? '/', 'http://x');
    const call: MatrixCall = {
      method: req.method ?? '',
      path: u.pathname,
      query: u.searchParams,
      headers: req.headers,
      json,
      at: Date.now(),
    };
    this.calls.push(call);
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!auth) return this.send(res, 401, { errcode: 'M_MISSING_TOKEN', error: 'Missing access token' });
    if (auth[1] !== this.accessToken)
      return this.send(res, 401, { errcode: 'M_UNKNOWN_TOKEN', error: 'Invalid access token passed.', soft_logout: false });
    const f = this.mode.failNext;
    if (f && f.count > 0) {
      f.count -= 1;
      if (f.status === 429)
        return this.send(res, 429, { errcode: 'M_LIMIT_EXCEEDED', error: 'Too Many Requests', retry_after_ms: f.retryAfterMs ?? 500 });
      return this.send(res, f.status, { errcode: 'M_UNKNOWN', error: 'Internal server error' });
    }
    const p = u.pathname;
    if (req.method === 'GET' && p === '/_matrix/client/v3/account/whoami') {
      return this.send(res, 200, { user_id: this.userId, device_id: 'TALONBOT', is_guest: false });
    }
    if (req.method === 'GET' && p === '/_matrix/client/v3/sync') return this.sync(call, res);
    let m = /^\/_matrix\/client\/v3\/rooms\/([^/]+)\/send\/([^/]+)\/([^/]+)$/.exec(p);
    if (m && req.method === 'PUT')
      return this.sendEvent(decodeURIComponent(m[1]!), decodeURIComponent(m[2]!), decodeURIComponent(m[3]!), json, res);
    m = /^\/_matrix\/client\/v3\/(?:rooms\/([^/]+)\/join|join\/([^/]+))$/.exec(p);
    if (m && req.method === 'POST') {
      const roomId = decodeURIComponent(m[1] ?? m[2]!);
      if (this.joined.has(roomId)) return this.send(res, 200, { room_id: roomId });
      if (!this.invited.has(roomId)) return this.send(res, 403, { errcode: 'M_FORBIDDEN', error: 'You are not invited to this room.' });
      this.joinBot(roomId);
      return this.send(res, 200, { room_id: roomId });
    }
    this.send(res, 404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
  }

  private sendEvent(roomId: string, eventType: string, txnId: string, json: unknown, res: ServerResponse): void {
    if (!this.joined.has(roomId))
      return this.send(res, 403, { errcode: 'M_FORBIDDEN', error: `User ${this.userId} not in room ${roomId}` });
    const content = json as { msgtype?: unknown; body?: unknown } | undefined;
    if (typeof content !== 'object' || content === null) return this.send(res, 400, { errcode: 'M_NOT_JSON', error: 'Content not JSON.' });
    const key = `${this.accessToken}/${txnId}`;
    const known = this.txns.get(key);
    if (known) return this.send(res, 200, { event_id: known });
    const eventId = this.append(roomId, { type: eventType, sender: this.userId, content });
    this.txns.set(key, eventId);
    this.sent.push({ roomId, txnId, eventId, msgtype: content.msgtype, body: content.body });
    if ((this.mode.loseSendAnswers ?? 0) > 0) {
      this.mode.loseSendAnswers! -= 1;
      return this.send(res, 502, { errcode: 'M_UNKNOWN', error: 'Bad Gateway' });
    }
    this.send(res, 200, { event_id: eventId });
  }

  /** Initial (no since: every joined room's recent timeline) or incremental (after since, held up to timeout ms). */
  private sync(call: MatrixCall, res: ServerResponse): void {
    const sinceRaw = call.query.get('since');
    let since: number | undefined;
    if (sinceRaw !== null) {
      const sm = /^s(\d+)$/.exec(sinceRaw);
      if (!sm || Number(sm[1]) > this.pos) return this.send(res, 400, { errcode: 'M_INVALID_PARAM', error: 'Invalid stream token' });
      since = Number(sm[1]);
    }
    const timeoutMs = Math.max(0, Math.min(Number(call.query.get('timeout') ?? 0) || 0, 300_000));
    let limit = 10;
    try {
      const l = JSON.parse(call.query.get('filter') ?? '{}')?.room?.timeline?.limit;
      if (typeof l === 'number' && l > 0) limit = l;
    } catch {
      /* a filter id: the default */
    }
    const answer = () => {
      const after = this.log.filter((e) => since === undefined || e.pos > since);
      const join: Record<string, unknown> = {};
      const invite: Record<string, unknown> = {};
      for (const roomId of this.joined) {
        const events = after
          .filter((e) => e.roomId === roomId && e.kind === 'timeline')
          .map((e) => (e as { event: Record<string, unknown> }).event);
        if (events.length === 0) continue;
        join[roomId] = {
          timeline: { events: events.slice(-limit), limited: events.length > limit, prev_batch: `t${this.pos}` },
          state: { events: [] },
          ephemeral: { events: [] },
          account_data: { events: [] },
          unread_notifications: { highlight_count: 0, notification_count: 0 },
        };
      }
      for (const e of after) {
        if (e.kind !== 'invite' || !this.invited.has(e.roomId)) continue;
        invite[e.roomId] = {
          invite_state: {
            events: [
              { type: 'm.room.member', sender: e.sender, state_key: this.userId, content: { membership: 'invite' } },
              { type: 'm.room.name', sender: e.sender, state_key: '', content: { name: 'a room' } },
            ],
          },
        };
      }
      return {
        next_batch: `s${this.pos}`,
        rooms: { join, invite, leave: {}, knock: {} },
        presence: { events: [] },
        account_data: { events: [] },
      };
    };
    const hasNews = () => since === undefined || this.log.some((e) => e.pos > since!);
    if (hasNews() || timeoutMs === 0) return this.send(res, 200, answer());
    const done = () => {
      clearTimeout(timer);
      this.waiters.delete(done);
      this.send(res, 200, answer());
    };
    const timer = setTimeout(done, timeoutMs);
    this.waiters.add(done);
    res.on('close', () => {
      clearTimeout(timer);
      this.waiters.delete(done);
    });
  }
}

/** Starts a fake homeserver on loopback. */
export async function startFakeMatrix(): Promise<FakeMatrix> {
  return new FakeMatrix().start();
}
