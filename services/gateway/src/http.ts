// The gateway's HTTP surface. Every API call is authenticated; bodies are capped;
// errors are JSON with a stable code. A chat request is accepted once JetStream
// has stored it, then answered from the orchestrator's reply.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  ERROR_TABLE,
  httpErrorBody,
  InFlight,
  isErrorCode,
  PayloadTooLarge,
  SpanKind,
  SUBJECTS,
  TalonError,
  tracedHeaders,
  withSpan,
  extractRecord,
  type Logger,
} from '@talon/kit';
import { InboundMessage, type OutboundMessage, type StreamChunk } from '@talon/proto';
import type { TokenStore } from './auth.ts';
import { chunkBody, completionBody, parseChatRequest } from './chat.ts';
import type { ReplyRouter } from './replies.ts';
import { loadUi, UI_CSP, type StaticAsset } from './ui.ts';

export interface GatewayDeps {
  tokens: TokenStore;
  router: ReplyRouter;
  js: JetStreamClient;
  log: Logger;
  maxBodyBytes: number;
  turnTimeoutMs: number;
  maxMessages: number;
}

const BASE_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...BASE_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: TalonError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const extra: Record<string, string> = err.code === 'unauthenticated' ? { 'www-authenticate': 'Bearer realm="talon"' } : {};
  // After a refused oversized body the rest of it is unread; do not keep the connection.
  if (err.code === 'payload_too_large') extra.connection = 'close';
  sendJson(res, err.httpStatus, httpErrorBody(err), extra);
}

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new PayloadTooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function statusForCode(code: string): number {
  return isErrorCode(code) ? ERROR_TABLE[code].http : 502;
}

export class GatewayHttp {
  readonly server: Server;
  readonly inFlight = new InFlight();
  private draining = false;
  private readonly ui: ReadonlyMap<string, StaticAsset> = loadUi();
  private readonly d: GatewayDeps;

  constructor(deps: GatewayDeps) {
    this.d = deps;
    this.server = createServer({ requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 30_000 }, (req, res) => {
      void this.inFlight.track(() => this.route(req, res));
    });
  }

  /** Health turns 503 and new API calls are refused while in-flight ones finish. */
  startDraining(): void {
    this.draining = true;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    try {
      if (url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
        sendJson(res, this.draining ? 503 : 200, { status: this.draining ? 'draining' : 'ok' });
        return;
      }
      const asset = req.method === 'GET' ? this.ui.get(url.pathname) : undefined;
      if (asset) {
        res.writeHead(200, {
          ...BASE_HEADERS,
          'content-type': asset.type,
          'content-length': asset.body.length,
          'content-security-policy': UI_CSP,
          'x-frame-options': 'DENY',
        });
        res.end(asset.body);
        return;
      }
      if (url.pathname.startsWith('/v1/')) {
        if (url.searchParams.has('token') || url.searchParams.has('access_token') || url.searchParams.has('api_key')) {
          throw new TalonError('invalid_argument', 'credentials are never accepted in a URL; send Authorization: Bearer <token>');
        }
        if (this.draining) throw new TalonError('shutting_down', 'the gateway is shutting down; retry shortly');
        if (url.pathname === '/v1/chat/completions') {
          if (req.method !== 'POST') throw new TalonError('method_not_allowed', 'use POST');
          await this.chat(req, res);
          return;
        }
        if (url.pathname === '/v1/models') {
          await this.d.tokens.authenticate(req.headers.authorization);
          sendJson(res, 200, { object: 'list', data: [{ id: 'talon', object: 'model', created: 0, owned_by: 'talon' }] });
          return;
        }
      }
      throw new TalonError('not_found', `no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      const te = err instanceof TalonError ? err : new TalonError('internal', 'internal error');
      if (!(err instanceof TalonError)) this.d.log.error({ err, path: url.pathname }, 'request failed');
      req.resume();
      sendError(res, te);
    }
  }

  private async chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const principal = await this.d.tokens.authenticate(req.headers.authorization);
    const ctype = String(req.headers['content-type'] ?? '');
    if (!/^application\/json\b/i.test(ctype)) throw new TalonError('unsupported_media_type', 'send the request as application/json');
    const raw = await readBody(req, this.d.maxBodyBytes);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new TalonError('invalid_json', 'the request body is not valid JSON');
    }
    const convHeader = req.headers['x-talon-conversation'];
    const chat = parseChatRequest(body, {
      maxMessages: this.d.maxMessages,
      conversationHeader: typeof convHeader === 'string' ? convHeader : undefined,
    });
    const id = randomUUID();
    const created = Math.floor(Date.now() / 1000);
    const completionId = `chatcmpl-${id.replace(/-/g, '')}`;
    const parent = extractRecord(req.headers as Record<string, string>);

    await withSpan(
      'gateway.chat',
      { kind: SpanKind.SERVER, parent, attributes: { 'talon.inbound_id': id, 'talon.stream': chat.stream } },
      async () => {
        const inbound: InboundMessage = {
          id,
          conversation: { userId: principal.userId, channel: 'api', threadId: chat.conversationId },
          messages: chat.messages,
          stream: chat.stream,
          reply: { subject: this.d.router.replySubject, streamSubject: chat.stream ? this.d.router.streamSubject(id) : '', requestId: id },
          model: chat.model,
          receivedAtMs: Date.now(),
          temperature: chat.temperature,
          maxTokens: chat.maxTokens,
        };
        let settle!: (m: OutboundMessage | undefined) => void;
        const done = new Promise<OutboundMessage | undefined>((r) => (settle = r));
        let lockedAttempt = 0;
        let sent = '';
        let interrupted = false;
        const writeSse = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
        this.d.router.register(id, {
          onReply: (m) => settle(m),
          onChunk: chat.stream
            ? (c: StreamChunk) => {
                if (lockedAttempt === 0) lockedAttempt = c.attempt;
                if (c.attempt !== lockedAttempt) {
                  // A retried turn streams again; never interleave two attempts.
                  if (sent !== '') interrupted = true;
                  else lockedAttempt = c.attempt;
                }
                if (c.attempt !== lockedAttempt || interrupted) return;
                sent += c.delta;
                writeSse(chunkBody(completionId, created, chat.model || 'talon', { content: c.delta }, null));
              }
            : undefined,
        });
        const timer = setTimeout(() => settle(undefined), this.d.turnTimeoutMs);
        res.on('close', () => {
          if (!res.writableFinished) settle(undefined);
        });
        try {
          try {
            await this.d.js.publish(SUBJECTS.inbound('api'), InboundMessage.encode(inbound).finish(), {
              msgID: id,
              headers: tracedHeaders(),
              timeout: 5000,
            });
          } catch (err) {
            throw new TalonError('unavailable', 'the message could not be queued (NATS unavailable); retry shortly', { cause: err });
          }
          if (chat.stream) {
            res.writeHead(200, {
              ...BASE_HEADERS,
              'content-type': 'text/event-stream; charset=utf-8',
              connection: 'keep-alive',
              'x-accel-buffering': 'no',
            });
            writeSse(chunkBody(completionId, created, chat.model || 'talon', { role: 'assistant', content: '' }, null));
          }
          const out = await done;
          if (!out) {
            if (res.destroyed) return;
            const te = new TalonError(
              'timeout',
              `no reply within ${this.d.turnTimeoutMs} ms; the turn may still complete and be stored in memory`,
            );
            if (chat.stream) {
              writeSse(httpErrorBody(te));
              res.end();
            } else sendError(res, te);
            return;
          }
          if (out.error) {
            const status = statusForCode(out.error.code);
            const errBody = { error: { code: out.error.code, message: out.error.message, type: out.error.code } };
            if (chat.stream) {
              writeSse(errBody);
              res.end('data: [DONE]\n\n');
            } else sendJson(res, status, errBody);
            return;
          }
          if (chat.stream) {
            if (interrupted && !out.content.startsWith(sent)) {
              writeSse({
                error: {
                  code: 'stream_interrupted',
                  message: 'the turn was retried after a failure and produced a different reply; send the request again',
                },
              });
            } else if (out.content.length > sent.length && out.content.startsWith(sent)) {
              // Deltas lost in flight (core NATS is at-most-once) are made up from the stored reply.
              writeSse(chunkBody(completionId, created, out.model, { content: out.content.slice(sent.length) }, null));
            }
            writeSse(chunkBody(completionId, created, out.model, {}, out.finishReason || 'stop'));
            res.end('data: [DONE]\n\n');
          } else {
            sendJson(res, 200, completionBody(completionId, created, out));
          }
        } finally {
          clearTimeout(timer);
          this.d.router.forget(id);
        }
      },
    );
  }
}
