// WebSocket API at /v1/ws (JSON text frames).
//
// Upgrade rules, checked before the handshake completes:
//   - the Origin must be an allowed origin (missing, "null" and foreign are refused:
//     no cross-site WebSocket hijacking); the URL carries no query at all;
//   - subprotocol "talon.v1" is required; the token may ride along as a second
//     subprotocol "talon.bearer.<token>" (never echoed back), or come in the first
//     message {"type":"auth","token":"..."} within GATEWAY_WS_AUTH_TIMEOUT_MS.
// Messages (client -> server):
//   {"type":"auth","token":"talon_pat_..."}
//   {"type":"chat","id":"c1","conversation":"web","content":"hi"}      (or "messages":[...], "stream":false)
//   {"type":"ping"}
// Server -> client: ready, queued, delta, done, error, pong (each chat event carries the client's id).
// The token is checked again for every chat message, so a revoked or rotated token
// stops working on an open connection too.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { httpErrorBody, TalonError, Unauthenticated } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { Principal } from './auth.ts';
import { parseChatRequest } from './chat.ts';
import { errorHeaders, refuseCredentialsInUrl, type Guard, RateLimited } from './guard.ts';
import { rateKey } from './net.ts';
import { rateLimited } from './metrics.ts';
import { remainder, type TurnRunner } from './turns.ts';

export const WS_PROTOCOL = 'talon.v1';
const BEARER_PROTOCOL = 'talon.bearer.';
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** WebSocket close codes (4000-4999 are application-defined). */
export const CLOSE = {
  unauthenticated: 4401,
  forbidden: 4403,
  authTimeout: 4408,
  rateLimited: 4429,
  protocol: 4400,
  goingAway: 1001,
} as const;

export interface WsOptions {
  guard: Guard;
  turns: TurnRunner;
  log: Logger;
  maxPayload: number;
  maxConnections: number;
  maxPerAddress: number;
  authTimeoutMs: number;
  maxInflight: number;
  maxMessages: number;
  isDraining: () => boolean;
}

function rejectUpgrade(socket: Duplex, err: TalonError): void {
  const body = JSON.stringify(httpErrorBody(err));
  const status = err.httpStatus;
  const reason =
    { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' }[
      status
    ] ?? 'Error';
  const headers = {
    ...errorHeaders(err),
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    connection: 'close',
  };
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\r\n')}\r\n\r\n${body}`,
  );
  socket.destroy();
}

export function parseProtocols(header: string | undefined): string[] {
  return (header ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

interface Conn {
  ws: WebSocket;
  address: string;
  principal: Principal | undefined;
  /** Token the connection authenticated with, re-checked per chat message. */
  token: string | undefined;
  inflight: number;
  authTimer: NodeJS.Timeout | undefined;
  abort: AbortController;
}

export class WsGateway {
  private readonly guard: Guard;
  private readonly turns: TurnRunner;
  private readonly log: Logger;
  private readonly maxConnections: number;
  private readonly maxPerAddress: number;
  private readonly authTimeoutMs: number;
  private readonly maxInflight: number;
  private readonly maxMessages: number;
  private readonly isDraining: () => boolean;
  private readonly wss: WebSocketServer;
  private readonly perAddress = new Map<string, number>();
  private open = 0;
  readonly counters = { accepted: 0, refused: 0 };

  constructor(opts: WsOptions) {
    this.guard = opts.guard;
    this.turns = opts.turns;
    this.log = opts.log;
    this.maxConnections = opts.maxConnections;
    this.maxPerAddress = opts.maxPerAddress;
    this.authTimeoutMs = opts.authTimeoutMs;
    this.maxInflight = opts.maxInflight;
    this.maxMessages = opts.maxMessages;
    this.isDraining = opts.isDraining;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxPayload,
      perMessageDeflate: false,
      clientTracking: true,
      // Only ever agree to talon.v1: a bearer subprotocol is consumed, never echoed.
      handleProtocols: (protocols) => (protocols.has(WS_PROTOCOL) ? WS_PROTOCOL : false),
    });
  }

  /** The connection caps: the whole gateway's (unavailable) and one address's (429, counted like any rate limit). */
  private checkCaps(key: string): void {
    if (this.open >= this.maxConnections) throw new TalonError('unavailable', 'too many WebSocket connections; retry later');
    if ((this.perAddress.get(key) ?? 0) >= this.maxPerAddress) {
      rateLimited.add({ scope: 'websocket_address' });
      throw new RateLimited('too many WebSocket connections from this address', 10);
    }
  }

  get connections(): number {
    return this.open;
  }

  /** Handles an HTTP upgrade request (server 'upgrade' event). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    void this.upgrade(req, socket, head).catch((err: unknown) => {
      this.counters.refused += 1;
      const te = err instanceof TalonError ? err : new TalonError('internal', 'internal error');
      if (!(err instanceof TalonError)) this.log.error({ err }, 'websocket upgrade failed');
      rejectUpgrade(socket, te);
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const raw = req.url ?? '/';
    refuseCredentialsInUrl(raw);
    if (raw !== '/v1/ws') {
      if (raw.startsWith('/v1/ws?'))
        throw new TalonError('invalid_argument', '/v1/ws takes no query parameters; nothing about the connection comes from the URL');
      throw new TalonError('not_found', 'the WebSocket endpoint is /v1/ws');
    }
    if (this.isDraining()) throw new TalonError('shutting_down', 'the gateway is shutting down; reconnect shortly');
    const address = this.guard.clientAddress(req);
    this.guard.checkWsOrigin(req);
    this.guard.admit(address, 'api');
    const protocols = parseProtocols(req.headers['sec-websocket-protocol']);
    if (!protocols.includes(WS_PROTOCOL)) throw new TalonError('invalid_argument', `request the subprotocol ${WS_PROTOCOL}`);
    const key = rateKey(address);
    this.checkCaps(key);
    const bearer = protocols.find((p) => p.startsWith(BEARER_PROTOCOL));
    let principal: Principal | undefined;
    let token: string | undefined;
    if (bearer !== undefined) {
      token = bearer.slice(BEARER_PROTOCOL.length);
      principal = await this.guard.authenticate(address, { token });
    } else {
      this.guard.assertNotBlocked(address);
    }
    // Re-check the caps after the await: other upgrades may have completed meanwhile.
    this.checkCaps(key);
    this.open += 1;
    this.perAddress.set(key, (this.perAddress.get(key) ?? 0) + 1);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.counters.accepted += 1;
      this.attach(ws, address, key, principal, token);
    });
  }

  private attach(ws: WebSocket, address: string, key: string, principal: Principal | undefined, token: string | undefined): void {
    const c: Conn = { ws, address, principal, token, inflight: 0, authTimer: undefined, abort: new AbortController() };
    const send = (obj: unknown) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(obj));
    };
    if (principal) send({ type: 'ready', user: principal.userId, scope: principal.scope, token_name: principal.tokenName });
    else {
      c.authTimer = setTimeout(() => {
        send({
          type: 'error',
          error: { code: 'unauthenticated', message: 'authenticate within the time limit: {"type":"auth","token":"..."}' },
        });
        ws.close(CLOSE.authTimeout, 'authentication timeout');
      }, this.authTimeoutMs);
    }
    ws.on('message', (data: RawData, isBinary: boolean) => {
      void this.onMessage(c, data, isBinary, send).catch((err: unknown) => {
        this.log.error({ err }, 'websocket message handling failed');
      });
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      clearTimeout(c.authTimer);
      c.abort.abort();
      this.open -= 1;
      const n = (this.perAddress.get(key) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(key);
      else this.perAddress.set(key, n);
    });
  }

  private async onMessage(c: Conn, data: RawData, isBinary: boolean, send: (o: unknown) => void): Promise<void> {
    const fail = (err: TalonError, id?: string) => send({ type: 'error', ...(id ? { id } : {}), ...httpErrorBody(err) });
    if (isBinary) {
      fail(new TalonError('invalid_argument', 'send JSON text frames'));
      c.ws.close(CLOSE.protocol, 'binary frame');
      return;
    }
    let msg: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(data.toString());
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
      msg = v as Record<string, unknown>;
    } catch {
      fail(new TalonError('invalid_json', 'each message must be a JSON object'));
      return;
    }
    const id = typeof msg.id === 'string' && CLIENT_ID.test(msg.id) ? msg.id : undefined;
    if (msg.type === 'ping') {
      send({ type: 'pong', ...(id ? { id } : {}) });
      return;
    }
    if (msg.type === 'auth') {
      if (c.principal) {
        fail(new TalonError('invalid_argument', 'already authenticated'));
        return;
      }
      const token = typeof msg.token === 'string' ? msg.token : '';
      try {
        c.principal = await this.guard.authenticate(c.address, { token });
        c.token = token;
        clearTimeout(c.authTimer);
        send({ type: 'ready', user: c.principal.userId, scope: c.principal.scope, token_name: c.principal.tokenName });
      } catch (err) {
        const te = err instanceof TalonError ? err : new Unauthenticated();
        fail(te);
        c.ws.close(te.code === 'rate_limited' ? CLOSE.rateLimited : CLOSE.unauthenticated, te.code);
      }
      return;
    }
    if (!c.principal || c.token === undefined) {
      fail(new Unauthenticated('authenticate first: {"type":"auth","token":"..."}'));
      c.ws.close(CLOSE.unauthenticated, 'unauthenticated');
      return;
    }
    if (msg.type !== 'chat') {
      fail(new TalonError('invalid_argument', 'type must be auth, chat or ping'), id);
      return;
    }
    if (!id) {
      fail(new TalonError('invalid_argument', 'chat messages need an id (1-64 of A-Z a-z 0-9 . _ : -) to match the replies'));
      return;
    }
    // The token may have been revoked or rotated since the connection opened.
    let principal: Principal;
    try {
      principal = await this.guard.authenticate(c.address, { token: c.token });
    } catch (err) {
      const te = err instanceof TalonError ? err : new Unauthenticated();
      fail(te, id);
      if (te.code === 'unauthenticated') c.ws.close(CLOSE.unauthenticated, 'token no longer valid');
      return;
    }
    if (c.inflight >= this.maxInflight) {
      fail(new RateLimited(`at most ${this.maxInflight} turns at once on one connection`, 1), id);
      return;
    }
    let chat;
    try {
      const body = {
        messages: msg.messages ?? (typeof msg.content === 'string' ? [{ role: 'user', content: msg.content }] : undefined),
        stream: msg.stream ?? true,
        model: msg.model,
        temperature: msg.temperature,
        max_tokens: msg.max_tokens,
        metadata: typeof msg.conversation === 'string' ? { conversation_id: msg.conversation } : undefined,
      };
      // The web UI's messages without a conversation id share the user's `default` one.
      chat = parseChatRequest(body, { maxMessages: this.maxMessages, unnamedConversation: () => 'default' });
    } catch (err) {
      fail(err instanceof TalonError ? err : new TalonError('invalid_argument', 'bad chat message'), id);
      return;
    }
    c.inflight += 1;
    try {
      const r = await this.turns.run(principal, chat, 'web', {
        abort: c.abort.signal,
        onQueued: () => send({ type: 'queued', id }),
        onDelta: (content) => send({ type: 'delta', id, content }),
      });
      const out = r.out;
      if (!out) {
        fail(new TalonError('timeout', `no reply within ${this.turns.timeout} ms; the turn may still complete`), id);
        return;
      }
      if (out.error) {
        send({ type: 'error', id, error: { code: out.error.code, message: out.error.message, type: out.error.code } });
        return;
      }
      const rest = chat.stream ? remainder(r) : out.content;
      if (rest === 'mismatch') {
        send({
          type: 'error',
          id,
          error: { code: 'stream_interrupted', message: 'the turn was retried and produced a different reply; the full reply follows' },
        });
      } else if (rest !== '' && chat.stream) send({ type: 'delta', id, content: rest });
      send({
        type: 'done',
        id,
        content: out.content,
        model: out.model,
        finish_reason: out.finishReason || 'stop',
        usage: {
          prompt_tokens: out.usage?.promptTokens ?? 0,
          completion_tokens: out.usage?.completionTokens ?? 0,
          total_tokens: out.usage?.totalTokens ?? 0,
        },
      });
    } catch (err) {
      fail(err instanceof TalonError ? err : new TalonError('internal', 'internal error'), id);
    } finally {
      c.inflight -= 1;
    }
  }

  /** Closes every connection (shutdown). */
  closeAll(): void {
    for (const ws of this.wss.clients) ws.close(CLOSE.goingAway, 'gateway shutting down');
  }
}
