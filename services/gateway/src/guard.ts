// Every request passes here before it reaches a handler: who the client is
// (trusted proxies only), whether its address or token is over its rate, whether
// a browser page from a foreign origin is trying to use us, and whether a
// credential was put in the URL. Failed authentications are counted per client
// address; past the limit the address gets 429 for everything, valid token or not.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { httpErrorBody, PayloadTooLarge, PermissionDenied, TalonError, Unauthenticated } from '@talon/kit/errors';
import { TOKEN_PREFIX } from '@talon/kit/contracts';
import type { Logger } from '@talon/kit/log';
import { authFailureReason, type Principal, type TokenStore } from './auth.ts';
import { authFailures as authFailureCount, rateLimited } from './metrics.ts';
import { checkOrigin, rateKey, TrustedProxies, type OriginVerdict } from './net.ts';
import { RateLimiter } from './ratelimit.ts';

export const BASE_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'cross-origin-resource-policy': 'same-origin',
};

export class RateLimited extends TalonError {
  readonly retryAfterS: number;
  constructor(message: string, retryAfterS: number) {
    super('rate_limited', message);
    this.name = 'RateLimited';
    this.retryAfterS = retryAfterS;
  }
}

export class ForeignOrigin extends PermissionDenied {
  readonly verdict: OriginVerdict;
  constructor(verdict: OriginVerdict) {
    super(
      verdict === 'missing'
        ? 'a browser Origin header is required here; connect from the Talon web UI or send Origin set to an allowed origin'
        : `requests from ${verdict === 'null' ? 'an opaque (null) origin' : 'this origin'} are refused; allowed origins are set with GATEWAY_ALLOWED_ORIGINS`,
    );
    this.name = 'ForeignOrigin';
    this.verdict = verdict;
  }
}

export class CredentialInUrl extends TalonError {
  constructor() {
    super(
      'invalid_argument',
      'credentials are never accepted in a URL; send Authorization: Bearer <token> (WebSocket: first message or subprotocol)',
    );
    this.name = 'CredentialInUrl';
  }
}

const CREDENTIAL_PARAMS = /^(token|access_token|api_key|apikey|api-key|key|auth|authorization|bearer|password|secret|jwt|session)$/i;
const TOKEN_SHAPE = new RegExp(`${TOKEN_PREFIX}[0-9a-fA-F]{8,}`);

/** Throws when a URL carries something that looks like a credential (parameter name or token shape). */
export function refuseCredentialsInUrl(rawUrl: string): void {
  let decoded = rawUrl;
  try {
    decoded = decodeURIComponent(rawUrl);
  } catch {
    /* keep raw */
  }
  if (TOKEN_SHAPE.test(decoded)) throw new CredentialInUrl();
  const q = rawUrl.indexOf('?');
  if (q < 0) return;
  for (const name of new URLSearchParams(rawUrl.slice(q + 1)).keys()) if (CREDENTIAL_PARAMS.test(name)) throw new CredentialInUrl();
}

export interface GuardOptions {
  tokens: TokenStore;
  trustedProxies: readonly string[];
  allowedOrigins: ReadonlySet<string>;
  rateAddressPerMin: number;
  rateTokenPerMin: number;
  authFailuresPerMin: number;
  rateWebhookPerMin: number;
  now?: () => number;
  /** Where a failed authentication is logged (warn: client address and reason, never the credential). */
  log?: Pick<Logger, 'warn'>;
}

export class Guard {
  readonly proxies: TrustedProxies;
  readonly allowedOrigins: ReadonlySet<string>;
  private readonly tokens: TokenStore;
  private readonly perAddress: RateLimiter;
  private readonly perToken: RateLimiter;
  private readonly authFailures: RateLimiter;
  private readonly perWebhookAddress: RateLimiter;
  private readonly log: Pick<Logger, 'warn'> | undefined;

  constructor(o: GuardOptions) {
    this.tokens = o.tokens;
    this.log = o.log;
    this.proxies = new TrustedProxies(o.trustedProxies);
    this.allowedOrigins = o.allowedOrigins;
    const clock = o.now ? { now: o.now } : {};
    this.perAddress = new RateLimiter({ perMinute: o.rateAddressPerMin }, clock);
    this.perToken = new RateLimiter({ perMinute: o.rateTokenPerMin }, clock);
    this.authFailures = new RateLimiter({ perMinute: o.authFailuresPerMin }, clock);
    this.perWebhookAddress = new RateLimiter({ perMinute: o.rateWebhookPerMin }, clock);
  }

  clientAddress(req: IncomingMessage): string {
    return this.proxies.clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for']);
  }

  /** Counts one request against the client address (API/UI or webhook budget). */
  admit(address: string, kind: 'api' | 'webhook'): void {
    const key = rateKey(address);
    const lim = kind === 'api' ? this.perAddress : this.perWebhookAddress;
    if (!lim.take(key)) {
      rateLimited.add({ scope: kind === 'api' ? 'address' : 'webhook_address' });
      throw new RateLimited('too many requests from this address; slow down', lim.retryAfterS(key));
    }
  }

  /** Refuses an address that failed authentication too often, before any credential is looked at. */
  assertNotBlocked(address: string): void {
    const key = rateKey(address);
    if (!this.authFailures.has(key)) {
      rateLimited.add({ scope: 'auth_failures' });
      throw new RateLimited(
        'too many failed authentications from this address; wait before trying again',
        this.authFailures.retryAfterS(key),
      );
    }
  }

  recordAuthFailure(address: string): void {
    this.authFailures.take(rateKey(address));
  }

  /** Authenticates an Authorization header (or a raw token) for a client address; applies every limit. */
  async authenticate(address: string, credential: { header?: string; token?: string }): Promise<Principal> {
    this.assertNotBlocked(address);
    let p: Principal;
    try {
      p =
        credential.token !== undefined
          ? await this.tokens.authenticateToken(credential.token)
          : await this.tokens.authenticate(credential.header);
    } catch (err) {
      if (err instanceof Unauthenticated) {
        this.recordAuthFailure(address);
        authFailureCount.add({ reason: authFailureReason(err) });
        this.log?.warn({ client: address, reason: authFailureReason(err) }, 'authentication failed');
      }
      throw err;
    }
    if (!this.perToken.take(p.tokenHash)) {
      rateLimited.add({ scope: 'token' });
      throw new RateLimited('too many requests for this token; slow down', this.perToken.retryAfterS(p.tokenHash));
    }
    return p;
  }

  /**
   * Browser protection for the API: a request that carries an Origin must come from
   * an allowed one, and a cross-site fetch (Sec-Fetch-Site) is refused outright.
   * Non-browser clients (no Origin) pass; they must still authenticate.
   */
  checkApiOrigin(req: IncomingMessage): void {
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    if (origin !== undefined) {
      const v = checkOrigin(origin, this.allowedOrigins);
      if (v !== 'allowed') throw new ForeignOrigin(v);
    } else if (site === 'cross-site' || site === 'same-site') {
      throw new ForeignOrigin('foreign');
    }
  }

  /** WebSocket upgrades must name an allowed Origin: missing, null and foreign are refused. */
  checkWsOrigin(req: IncomingMessage): void {
    const v = checkOrigin(req.headers.origin, this.allowedOrigins);
    if (v !== 'allowed') throw new ForeignOrigin(v);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...BASE_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

export function errorHeaders(err: TalonError): Record<string, string> {
  const extra: Record<string, string> = err.code === 'unauthenticated' ? { 'www-authenticate': 'Bearer realm="talon"' } : {};
  // After a refused oversized body the rest of it is unread; do not keep the connection.
  if (err.code === 'payload_too_large') extra.connection = 'close';
  if (err instanceof RateLimited) extra['retry-after'] = String(err.retryAfterS);
  return extra;
}

export function sendError(res: ServerResponse, err: TalonError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  sendJson(res, err.httpStatus, httpErrorBody(err), errorHeaders(err));
}

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  // Past the limit the rest is read and dropped (up to a bound) so the client can
  // finish sending and read the 413; breaking off would reset the connection under it.
  const drainLimit = limit * 4 + 1024 * 1024;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (over) {
        if (size > drainLimit) throw new PayloadTooLarge(limit);
        continue;
      }
      if (size > limit) {
        over = true;
        chunks.length = 0;
        continue;
      }
      chunks.push(chunk);
    }
    if (over) throw new PayloadTooLarge(limit);
  } catch (err) {
    if (err instanceof TalonError) throw err;
    // The client went away mid-body: its problem, not ours (and nobody reads the answer).
    throw new TalonError('invalid_argument', 'the request body ended early (connection closed)', { cause: err });
  }
  return Buffer.concat(chunks);
}

export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const ctype = String(req.headers['content-type'] ?? '');
  // JSON only: a cross-site form cannot send it without a CORS preflight we never grant.
  if (!/^application\/json\b/i.test(ctype)) throw new TalonError('unsupported_media_type', 'send the request as application/json');
  const raw = await readBody(req, limit);
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new TalonError('invalid_json', 'the request body is not valid JSON');
  }
}
