// The gateway's HTTP surface. Every API call is authenticated from the
// Authorization header only; bodies are capped; browser requests from foreign
// origins are refused; errors are JSON with a stable code. A chat request is
// accepted once JetStream has stored it, then answered from the orchestrator's reply.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ERROR_TABLE, httpErrorBody, isErrorCode, openAiErrorParam, openAiErrorType, TalonError } from '@talon/kit/errors';
import { extractRecord, SpanKind, withSpan } from '@talon/kit/telemetry';
import { InFlight } from '@talon/kit/lifecycle';
import { modelNotFound } from '@talon/kit/models';
import type { Logger } from '@talon/kit/log';
import { logMethod, logRequest, routeTemplate, UNLOGGED_PATHS } from './access-log.ts';
import type { Api } from './api.ts';
import { authFailures, countRequest } from './metrics.ts';
import type { Principal } from './auth.ts';
import { chunkBody, completionBody, parseChatRequest, toolCallDeltas, usageChunkBody } from './chat.ts';
import { HandshakeRefused, isChannel, WebhookRejected, type Channel } from './channels/types.ts';
import { BASE_HEADERS, errorHeaders, Guard, readBody, readJson, refuseCredentialsInUrl, sendError, sendJson } from './guard.ts';
import type { WebhookIngress } from './ingress.ts';
import { remainder, type TurnRunner } from './turns.ts';
import { loadUi, uiHeaders, type StaticAsset } from './ui.ts';

export { sendError, readBody };

export interface GatewayDeps {
  guard: Guard;
  turns: TurnRunner;
  api: Api;
  ingress: WebhookIngress;
  channels: readonly Channel[];
  /** Enabled channels the gateway connects to itself (Telegram long polling): their webhook is off. */
  outboundChannels?: readonly Channel[];
  /** POST /hooks/routine/<name> (routine-hooks.ts): a signed event for routines listening with --on webhook:<name>. */
  routineHook?: (name: string, headers: IncomingMessage['headers'], raw: Buffer) => Promise<{ status: number; body: unknown }>;
  log: Logger;
  maxBodyBytes: number;
  maxWebhookBytes: number;
  maxMessages: number;
  /** Largest decoded data: image in an OpenAI API request (GATEWAY_API_MAX_IMAGE_BYTES); default 2 MiB. */
  maxImageBytes?: number;
  hsts: boolean;
}

function statusForCode(code: string): number {
  return isErrorCode(code) ? ERROR_TABLE[code].http : 502;
}

export class GatewayHttp {
  readonly server: Server;
  readonly inFlight = new InFlight();
  private draining = false;
  private readonly ui: ReadonlyMap<string, StaticAsset> = loadUi();
  private readonly guard: Guard;
  private readonly turns: TurnRunner;
  private readonly api: Api;
  private readonly ingress: WebhookIngress;
  private readonly channels: readonly Channel[];
  private readonly outboundChannels: readonly Channel[];
  private readonly routineHook: GatewayDeps['routineHook'];
  private readonly log: Logger;
  private readonly maxBodyBytes: number;
  private readonly maxWebhookBytes: number;
  private readonly maxMessages: number;
  private readonly maxImageBytes: number | undefined;
  private readonly hsts: boolean;
  /** Counters for logs and benchmarks. */
  readonly counters = { webhooksAccepted: 0, webhooksRejected: 0, webhooksDuplicate: 0, webhooksUnpaired: 0 };

  constructor(deps: GatewayDeps) {
    this.guard = deps.guard;
    this.turns = deps.turns;
    this.api = deps.api;
    this.ingress = deps.ingress;
    this.channels = deps.channels;
    this.outboundChannels = deps.outboundChannels ?? [];
    this.routineHook = deps.routineHook;
    this.log = deps.log;
    this.maxBodyBytes = deps.maxBodyBytes;
    this.maxWebhookBytes = deps.maxWebhookBytes;
    this.maxMessages = deps.maxMessages;
    this.maxImageBytes = deps.maxImageBytes;
    this.hsts = deps.hsts;
    this.server = createServer(
      { requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 30_000, maxHeaderSize: 16 * 1024 },
      (req, res) => {
        countRequest(req, res);
        void this.inFlight.track(() => this.route(req, res));
      },
    );
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Health turns 503 and new API calls are refused while in-flight ones finish. */
  startDraining(): void {
    this.draining = true;
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://gateway.invalid');
    } catch {
      url = new URL('http://gateway.invalid/');
    }
    const extra = this.hsts ? { 'strict-transport-security': 'max-age=31536000' } : {};
    let address = 'unknown';
    let principal: Principal | undefined;
    if (!UNLOGGED_PATHS.has(url.pathname)) {
      // One line per request once it is over (access-log.ts): route template, never the path or a credential.
      const started = performance.now();
      res.once('close', () =>
        logRequest(this.log, {
          method: logMethod(req.method),
          route: routeTemplate(url.pathname),
          status: res.statusCode,
          durationMs: performance.now() - started,
          client: address !== 'unknown' ? address : this.guard.clientAddress(req),
          user: principal?.userId,
          tokenId: principal?.tokenId,
          aborted: !res.writableFinished,
        }),
      );
    }
    try {
      if (url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
        sendJson(res, this.draining ? 503 : 200, { status: this.draining ? 'draining' : 'ok' });
        return;
      }
      refuseCredentialsInUrl(req.url ?? '/');
      address = this.guard.clientAddress(req);
      if (url.pathname.startsWith('/hooks/')) {
        this.guard.admit(address, 'webhook');
        await this.webhook(req, res, url, address);
        return;
      }
      this.guard.admit(address, 'api');
      const asset = req.method === 'GET' || req.method === 'HEAD' ? this.ui.get(url.pathname) : undefined;
      if (asset) {
        res.writeHead(200, { ...BASE_HEADERS, ...uiHeaders, ...extra, 'content-type': asset.type, 'content-length': asset.body.length });
        res.end(req.method === 'HEAD' ? undefined : asset.body);
        return;
      }
      if (url.pathname.startsWith('/v1/')) {
        if (this.draining) throw new TalonError('shutting_down', 'the gateway is shutting down; retry shortly');
        this.guard.checkApiOrigin(req);
        if (url.pathname === '/v1/ws')
          throw new TalonError('invalid_argument', 'GET /v1/ws is a WebSocket endpoint; connect with Upgrade: websocket');
        principal = await this.guard.authenticate(address, { header: req.headers.authorization });
        if (url.pathname === '/v1/chat/completions') {
          if (req.method !== 'POST') throw new TalonError('method_not_allowed', 'use POST');
          await this.chat(req, res, principal);
          return;
        }
        if (url.pathname === '/v1/models') {
          sendJson(res, 200, {
            object: 'list',
            // The models, then the agent profiles (talon agents): either may be named as `model`.
            data: [...this.turns.models.models.map((m) => m.name), ...(await this.turns.agentNames())].map((id) => ({
              id,
              object: 'model',
              created: 0,
              owned_by: 'talon',
            })),
          });
          return;
        }
        if (url.pathname.startsWith('/v1/models/') && (req.method === 'GET' || req.method === 'HEAD')) {
          // OpenAI's retrieve: the model as named, or 404 model_not_found (an empty or undecodable id names none).
          let name = '';
          try {
            name = decodeURIComponent(url.pathname.slice('/v1/models/'.length));
          } catch {
            /* not a name */
          }
          if (name === '') throw modelNotFound(this.turns.models, name);
          await this.turns.model(name);
          sendJson(res, 200, { id: name, object: 'model', created: 0, owned_by: 'talon' });
          return;
        }
        if (await this.api.route(req, res, url, principal)) return;
      }
      throw new TalonError('not_found', `no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      const te = err instanceof TalonError ? err : new TalonError('internal', 'internal error');
      if (!(err instanceof TalonError)) this.log.error({ err, path: url.pathname }, 'request failed');
      req.resume();
      sendError(res, te);
    }
  }

  private async webhook(req: IncomingMessage, res: ServerResponse, url: URL, address: string): Promise<void> {
    const name = url.pathname.slice('/hooks/'.length);
    if (name.startsWith('routine/') && this.routineHook) {
      if (req.method !== 'POST') throw new TalonError('method_not_allowed', 'webhooks are POSTed');
      if (this.draining) throw new TalonError('shutting_down', 'the gateway is shutting down; retry shortly');
      this.guard.assertNotBlocked(address);
      const raw = await readBody(req, this.maxWebhookBytes);
      const hook = this.routineHook;
      const r = await this.verified('webhook', address, () => hook(name.slice('routine/'.length), req.headers, raw));
      sendJson(res, r.status, r.body);
      return;
    }
    if (!isChannel(name) || !this.channels.includes(name)) {
      throw new TalonError(
        'not_found',
        `no webhook for ${name.slice(0, 32)}; enabled channels: ${this.channels.join(', ') || 'none (set TALON_CHANNELS)'}`,
      );
    }
    // A platform's subscription handshake (WhatsApp) is the one GET a webhook answers.
    const handshake = req.method === 'GET' && this.ingress.hasHandshake(name);
    if (req.method !== 'POST' && !handshake) throw new TalonError('method_not_allowed', 'webhooks are POSTed');
    if (this.outboundChannels.includes(name)) {
      // Never both: a second way in would deliver each message twice.
      throw new TalonError(
        'conflict',
        `${name} is connected by long polling (GATEWAY_${name.toUpperCase()}_MODE=polling), so its webhook is off; set GATEWAY_${name.toUpperCase()}_MODE=webhook to receive webhooks instead`,
      );
    }
    if (this.draining) throw new TalonError('shutting_down', 'the gateway is shutting down; the platform will retry');
    this.guard.assertNotBlocked(address);
    if (handshake) {
      const challenge = await this.verified(name, address, () => this.ingress.handshake(name, url.searchParams));
      req.resume();
      res.writeHead(200, { ...BASE_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(challenge) });
      res.end(challenge);
      return;
    }
    const raw = await readBody(req, this.maxWebhookBytes);
    const result = await this.verified(name, address, () => this.ingress.handle(name, req.headers, raw));
    if (result.outcome === 'accepted') this.counters.webhooksAccepted += 1;
    else if (result.outcome === 'duplicate') this.counters.webhooksDuplicate += 1;
    else if (result.outcome === 'pairing_required') this.counters.webhooksUnpaired += 1;
    sendJson(res, result.status, result.body);
  }

  /** Runs a webhook's vault check; a refusal is counted as an auth failure of the client address and logged (throttled). */
  private async verified<T>(name: Channel, address: string, check: () => Promise<T>): Promise<T> {
    try {
      return await check();
    } catch (err) {
      if (err instanceof WebhookRejected || err instanceof HandshakeRefused) {
        this.counters.webhooksRejected += 1;
        this.guard.recordAuthFailure(address);
        authFailures.add({ reason: 'webhook_signature' });
        this.warnThrottled(`rejected:${name}:${err.message}`, { channel: name, client: address, reason: err.message }, 'webhook refused');
      } else if (err instanceof TalonError && err.code === 'unavailable') {
        // The platform retries; the operator needs to know why (vault sealed, secret missing, egress down).
        this.warnThrottled(
          `unavailable:${name}:${err.message}`,
          { channel: name, reason: err.message },
          'webhook not verified; answered 503 so the platform retries',
        );
      }
      throw err;
    }
  }

  private readonly lastWarn = new Map<string, number>();

  /** One log line per distinct problem per 10 s: a flood of bad webhooks must not flood the logs. */
  private warnThrottled(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if ((this.lastWarn.get(key) ?? 0) > now - 10_000) return;
    if (this.lastWarn.size > 1000) this.lastWarn.clear();
    this.lastWarn.set(key, now);
    this.log.warn(fields, msg);
  }

  private async chat(req: IncomingMessage, res: ServerResponse, principal: Awaited<ReturnType<Guard['authenticate']>>): Promise<void> {
    const body = await readJson(req, this.maxBodyBytes);
    const convHeader = req.headers['x-talon-conversation'];
    const chat = parseChatRequest(body, {
      maxMessages: this.maxMessages,
      conversationHeader: typeof convHeader === 'string' ? convHeader : undefined,
      unnamedConversation: () => `api-${randomUUID()}`,
      ...(this.maxImageBytes !== undefined ? { maxImageBytes: this.maxImageBytes } : {}),
    });
    // An unknown model is answered 404 here, before anything is queued (TurnRunner checks again).
    const model = (await this.turns.model(chat.model)).name;
    const created = Math.floor(Date.now() / 1000);
    const parent = extractRecord(req.headers as Record<string, string>);
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    await withSpan('gateway.chat', { kind: SpanKind.SERVER, parent, attributes: { 'talon.stream': chat.stream } }, async () => {
      const id = randomUUID();
      const completionId = `chatcmpl-${id.replace(/-/g, '')}`;
      const writeSse = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
      // Every chunk of one stream, and the completion, names the model as the client asked for it
      // (the first chunk goes out before any provider answers; which one answered is Talon's business).
      const streamModel = chat.model || model;
      const r = await this.turns.run(
        principal,
        chat,
        'api',
        {
          abort: abort.signal,
          onQueued: () => {
            if (!chat.stream) return;
            res.writeHead(200, {
              ...BASE_HEADERS,
              'content-type': 'text/event-stream; charset=utf-8',
              connection: 'keep-alive',
              'x-accel-buffering': 'no',
            });
            writeSse(chunkBody(completionId, created, streamModel, { role: 'assistant', content: '' }, null));
          },
          onDelta: (delta) => writeSse(chunkBody(completionId, created, streamModel, { content: delta }, null)),
        },
        id,
      );
      const out = r.out;
      if (!out) {
        if (res.destroyed) return;
        const te = new TalonError(
          'timeout',
          `no reply within ${this.turns.timeout} ms; the turn may still complete and be stored in memory`,
        );
        if (chat.stream) {
          writeSse(httpErrorBody(te));
          res.end();
        } else sendError(res, te);
        return;
      }
      if (out.error) {
        const errBody = {
          error: {
            code: out.error.code,
            message: out.error.message,
            type: openAiErrorType(statusForCode(out.error.code), out.error.code),
            param: openAiErrorParam(out.error.code),
          },
        };
        if (chat.stream) {
          writeSse(errBody);
          res.end('data: [DONE]\n\n');
        } else sendJson(res, statusForCode(out.error.code), errBody);
        return;
      }
      if (chat.stream) {
        const rest = remainder(r);
        if (rest === 'mismatch') {
          writeSse({
            error: {
              code: 'stream_interrupted',
              message: 'the turn was retried after a failure and produced a different reply; send the request again',
            },
          });
        } else if (rest !== '') {
          // Deltas lost in flight (core NATS is at-most-once) are made up from the stored reply.
          writeSse(chunkBody(completionId, created, streamModel, { content: rest }, null));
        }
        // Calls of the client's tools arrive with the final reply; they go out as OpenAI streams them.
        for (const delta of toolCallDeltas(out)) writeSse(chunkBody(completionId, created, streamModel, delta, null));
        writeSse(chunkBody(completionId, created, streamModel, {}, out.finishReason || 'stop'));
        if (chat.includeUsage) writeSse(usageChunkBody(completionId, created, streamModel, out));
        res.end('data: [DONE]\n\n');
      } else {
        sendJson(res, 200, completionBody(completionId, created, { ...out, model: streamModel }));
      }
    });
  }
}

export { errorHeaders };
