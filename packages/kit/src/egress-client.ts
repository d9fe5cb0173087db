// The only way a Talon workload reaches the outside: HTTP requests sent in
// absolute form to the egress proxy over mutual TLS. Egress authenticates the
// caller by its certificate, applies policy, injects credentials and scans.
// This client never connects anywhere but the proxy.
import type { IncomingMessage } from 'node:http';
import { connect as tlsConnect, checkServerIdentity as tlsCheckServerIdentity, type PeerCertificate } from 'node:tls';
import { createRequire } from 'node:module';
import type { Dispatcher, Pool } from 'undici';
import type WebSocket from 'ws';
import { TalonError, isErrorCode } from './errors.ts';
import { identityFromSan, spiffeId } from './identity.ts';
import type { TlsMaterial } from './grpc.ts';
import { injectRecord } from './telemetry.ts';

export const EGRESS_ERROR_HEADER = 'x-talon-egress-error';
/** Egress's stable reason for a refusal (e.g. host_not_allowed, secret_leak_blocked). */
export const EGRESS_REASON_HEADER = 'x-talon-egress-reason';
/**
 * The Talon user a workload acts for (`x-talon-user: <user id>`), told to egress so its
 * decision names the user. Egress reads it only from the principals that act for users
 * (orchestrator, sandbox, gateway), checks it against the user-id grammar, records it,
 * and never forwards it upstream.
 */
export const EGRESS_USER_HEADER = 'x-talon-user';
/**
 * `ws` or `wss`: the scheme of a WebSocket target sent to egress in origin form (the
 * request line holds only the path, Host the target). Never forwarded upstream.
 */
export const WEBSOCKET_SCHEME_HEADER = 'x-talon-websocket-scheme';

export interface EgressWebSocketOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  /** The Talon user the connection is for (recorded by egress, never sent upstream). */
  user?: string;
  /** Largest frame accepted from the platform. */
  maxPayload?: number;
  handshakeTimeoutMs?: number;
}

/** A request egress refused; `reason` says why (EGRESS_REASON_HEADER). */
export class EgressRefusal extends TalonError {
  readonly reason: string;
  constructor(code: ConstructorParameters<typeof TalonError>[0], reason: string, message: string) {
    super(code, message);
    this.name = 'EgressRefusal';
    this.reason = reason;
  }
}

export interface EgressRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
  /** Time allowed until response headers arrive. */
  headersTimeoutMs?: number;
  /** Max idle time between body chunks. */
  bodyTimeoutMs?: number;
  /** The Talon user this request is made for (EGRESS_USER_HEADER); recorded by egress, never sent upstream. */
  user?: string;
}

export interface EgressResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

/** Connection errors that mean the request never reached the proxy: another replica may take it. */
const NOT_SENT = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The proxy's certificate must name `expect` (egress) as well as be valid for the host name. */
function proxyIdentityCheck(expect: string) {
  return (host: string, cert: PeerCertificate): Error | undefined => {
    const id = identityFromSan(cert.subjectaltname);
    if (id !== expect) return new Error(`egress proxy certificate names ${id ? spiffeId(id) : 'nobody'}, expected ${spiffeId(expect)}`);
    return tlsCheckServerIdentity(host, cert);
  };
}

export class EgressClient {
  /** One connection pool per proxy, made on the first request (see `pool`). */
  private pools: Pool[] | undefined;
  private readonly proxies: string[];
  private readonly connections: number;
  private next = 0;
  /** The proxy URL, or several comma-separated (egress replicas without a load balancer in front). */
  readonly proxyUrl: string;
  private readonly tls: TlsMaterial;
  private readonly expect: string;

  constructor(opts: { proxyUrl: string; tls: TlsMaterial; expectProxy?: string; connections?: number }) {
    this.proxyUrl = opts.proxyUrl;
    this.tls = opts.tls;
    const expect = opts.expectProxy ?? 'egress';
    this.expect = expect;
    this.proxies = opts.proxyUrl.split(',').map((u) => u.trim());
    this.connections = opts.connections ?? 16;
  }

  /**
   * The pools, made on first use: undici (≈350 modules, ≈20 MiB resident) is loaded only by
   * a process that sends something (a gateway with no chat platform never does;
   * docs/architecture.md §11).
   */
  private get pool(): Pool[] {
    if (this.pools) return this.pools;
    const { Pool: UndiciPool }: typeof import('undici') = createRequire(import.meta.url)('undici');
    this.pools = this.proxies.map(
      (u) =>
        new UndiciPool(u, {
          connections: this.connections,
          pipelining: 1,
          keepAliveTimeout: 30_000,
          connect: {
            ca: this.tls.ca,
            cert: this.tls.cert,
            key: this.tls.key,
            servername: 'egress',
            checkServerIdentity: proxyIdentityCheck(this.expect),
          },
        }),
    );
    return this.pools;
  }

  /**
   * Round robin over the proxies; a proxy that refuses the connection is skipped (the
   * request was never sent, so sending it to the next one cannot do it twice).
   */
  private async send(opts: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
    const pools = this.pool;
    const first = this.next++ % pools.length;
    for (let i = 0; ; i++) {
      const pool = pools[(first + i) % pools.length]!;
      try {
        return await pool.request(opts);
      } catch (err) {
        if (i + 1 >= pools.length || !NOT_SENT.has(String((err as { code?: string }).code))) throw err;
      }
    }
  }

  /**
   * Sends a request through egress. Egress refusals (policy, private address,
   * missing secret) become TalonErrors with egress's stable code; upstream
   * responses of any status are returned as-is.
   */
  async request(req: EgressRequest): Promise<EgressResponse> {
    const target = new URL(req.url);
    // No Host header: undici would take it for the TLS server name of the proxy connection;
    // egress addresses the upstream from the absolute URL.
    const headers: Record<string, string> = { ...req.headers };
    delete headers.host;
    // `user` is the one way to name the user: a header of that name given otherwise is dropped.
    for (const k of Object.keys(headers)) if (k.toLowerCase() === EGRESS_USER_HEADER) delete headers[k];
    if (req.user) headers[EGRESS_USER_HEADER] = req.user;
    injectRecord(headers);
    let res: Dispatcher.ResponseData;
    try {
      res = await this.send({
        method: req.method as Dispatcher.HttpMethod,
        path: target.toString(),
        headers,
        body: req.body,
        signal: req.signal,
        headersTimeout: req.headersTimeoutMs ?? 60_000,
        bodyTimeout: req.bodyTimeoutMs ?? 60_000,
      });
    } catch (err) {
      const e = err as Error & { code?: string };
      if (e.name === 'AbortError') throw err;
      if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
        throw new TalonError('upstream_timeout', `no response from ${target.host} through egress in time`, { cause: err });
      }
      throw new TalonError('unavailable', `egress proxy at ${this.proxyUrl} is unreachable (${e.code ?? e.message})`, { cause: err });
    }
    const egressCode = res.headers[EGRESS_ERROR_HEADER];
    if (typeof egressCode === 'string') {
      const text = await res.body.text().catch(() => '');
      let message = `egress refused the request (${egressCode})`;
      try {
        const parsed = JSON.parse(text) as { error?: { message?: string } };
        if (parsed.error?.message) message = parsed.error.message;
      } catch {
        /* keep default */
      }
      const reason = res.headers[EGRESS_REASON_HEADER];
      throw new EgressRefusal(
        isErrorCode(egressCode) ? egressCode : 'policy_denied',
        typeof reason === 'string' ? reason : egressCode,
        message,
      );
    }
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  /**
   * Opens a WebSocket to `url` (ws: or wss:) through egress: the upgrade is decided like a
   * request (policy, scan, header placeholders filled for the bound host), frames are
   * scanned on the way out and redacted on the way in. Resolves once the platform accepted
   * the upgrade, with the socket **paused**: attach listeners, then call resume(). An egress
   * refusal rejects with its EgressRefusal. `ws` is loaded on first use.
   */
  async websocket(url: string, opts: EgressWebSocketOptions = {}): Promise<WebSocket> {
    const target = new URL(url);
    if (target.protocol !== 'ws:' && target.protocol !== 'wss:')
      throw new TalonError('invalid_argument', 'a WebSocket URL starts with ws: or wss:');
    const proxy = new URL(this.proxies[this.next++ % this.proxies.length]!);
    const headers: Record<string, string> = { ...opts.headers, [WEBSOCKET_SCHEME_HEADER]: target.protocol.slice(0, -1) };
    for (const k of Object.keys(headers)) if (k.toLowerCase() === EGRESS_USER_HEADER) delete headers[k];
    if (opts.user) headers[EGRESS_USER_HEADER] = opts.user;
    injectRecord(headers);
    const { default: WS } = await import('ws');
    const ws = new WS(target.toString(), opts.protocols ?? [], {
      headers,
      perMessageDeflate: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 30_000,
      ...(opts.maxPayload ? { maxPayload: opts.maxPayload } : {}),
      // Whatever the target's scheme, the connection goes to egress over mutual TLS.
      createConnection: () =>
        tlsConnect({
          host: proxy.hostname,
          port: Number(proxy.port || 443),
          ca: this.tls.ca,
          cert: this.tls.cert,
          key: this.tls.key,
          servername: 'egress',
          checkServerIdentity: proxyIdentityCheck(this.expect),
        }),
    });
    return new Promise((resolve, reject) => {
      // Returned paused: the platform may speak first (in the same packet as the 101), before the caller listens.
      ws.once('open', () => {
        ws.pause();
        resolve(ws);
      });
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += text.length < 4096 ? c.toString('utf8') : ''));
        res.on('end', () => {
          ws.terminate();
          const code = res.headers[EGRESS_ERROR_HEADER];
          const reason = res.headers[EGRESS_REASON_HEADER];
          let message = `egress answered the WebSocket upgrade with HTTP ${res.statusCode}`;
          try {
            const parsed = JSON.parse(text) as { error?: { message?: string } };
            if (parsed.error?.message) message = parsed.error.message;
          } catch {
            /* keep default */
          }
          reject(
            typeof code === 'string'
              ? new EgressRefusal(isErrorCode(code) ? code : 'policy_denied', typeof reason === 'string' ? reason : code, message)
              : new TalonError('upstream_error', message),
          );
        });
      });
      ws.once('error', (err) => reject(new TalonError('unavailable', `WebSocket through egress failed (${err.message})`, { cause: err })));
    });
  }

  async close(): Promise<void> {
    await Promise.all((this.pools ?? []).map((p) => p.close()));
  }
}
