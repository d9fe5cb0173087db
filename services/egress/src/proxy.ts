// The forward proxy's request handler: authenticate the caller, apply the
// destination policy, resolve and check the address, forward, stream back, audit.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { EGRESS_ERROR_HEADER, TalonError, identityFromSan, SpanKind, withSpan, type Logger } from '@talon/kit';
import type { AuditSink, DecisionInput } from './audit.ts';
import { decideDestination, defaultPort, normalizeHost, type DestinationRule } from './policy.ts';
import { DestinationRefused, resolveDestination, type Lookup } from './resolve.ts';
import type { UpstreamPools } from './upstream.ts';

/** Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus proxy credentials and internal trace context. */
const HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'traceparent',
  'tracestate',
  'baggage',
]);

export interface ProxyDeps {
  rules: () => readonly DestinationRule[];
  allowPrivate: ReadonlyArray<{ host: string; port: number }>;
  lookup: Lookup;
  pools: UpstreamPools;
  audit: AuditSink;
  log: Logger;
  maxRequestBytes: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
}

export class ProxyError extends TalonError {
  readonly reason: string;
  constructor(code: ConstructorParameters<typeof TalonError>[0], reason: string, message: string) {
    super(code, message);
    this.reason = reason;
  }
}

function sendError(res: ServerResponse, err: TalonError, reason: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code: err.code, reason, message: err.message } });
  res.writeHead(err.httpStatus, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [EGRESS_ERROR_HEADER]: err.code,
    'x-talon-egress-reason': reason,
  });
  res.end(body);
}

function connectionHeaderTokens(h: string | string[] | undefined): Set<string> {
  const raw = Array.isArray(h) ? h.join(',') : (h ?? '');
  return new Set(
    raw
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ''),
  );
}

export function forwardableHeaders(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const listed = connectionHeaderTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_HEADERS.has(k) || listed.has(k)) continue;
    out[k] = v;
  }
  return out;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit)
    throw new ProxyError('payload_too_large', 'body_too_large', `request body of ${declared} bytes exceeds egress's limit of ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ProxyError('payload_too_large', 'body_too_large', `request body exceeds egress's limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export function createProxyHandler(deps: ProxyDeps) {
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const socket = req.socket as TLSSocket;
    const principal = identityFromSan(socket.getPeerCertificate?.()?.subjectaltname);
    const method = (req.method ?? 'GET').toUpperCase();
    const base: DecisionInput = {
      principal: principal ?? '',
      method,
      scheme: '',
      host: '',
      port: 0,
      path: '',
      allowed: false,
      reason: '',
      status: 0,
      durationMs: 0,
      traceId: '',
    };
    const finish = (d: Partial<DecisionInput>) => deps.audit.record({ ...base, ...d, durationMs: Date.now() - started });

    await withSpan(
      'egress.proxy',
      { kind: SpanKind.SERVER, attributes: { 'talon.principal': principal ?? 'unknown', 'http.request.method': method } },
      async (span) => {
        base.traceId = span.spanContext().traceId;
        try {
          if (!principal)
            throw new ProxyError('unauthenticated', 'no_principal', 'the client certificate names no Talon workload identity');
          let target: URL;
          try {
            target = new URL(req.url ?? '');
          } catch {
            throw new ProxyError(
              'invalid_argument',
              'not_absolute_form',
              'egress is a forward proxy: send the request target in absolute form (https://host/path)',
            );
          }
          if (target.username || target.password)
            throw new ProxyError(
              'invalid_argument',
              'userinfo_in_url',
              'URLs with user:password@ are refused; use a secret placeholder in a header',
            );
          const host = normalizeHost(target.hostname);
          const port = target.port ? Number(target.port) : defaultPort(target.protocol);
          Object.assign(base, { scheme: target.protocol.replace(':', ''), host, port, path: target.pathname });
          span.setAttributes({ 'server.address': host, 'server.port': port, 'url.scheme': base.scheme });

          const decision = decideDestination(deps.rules(), { principal, method, scheme: target.protocol, host, port });
          if (!decision.allowed) {
            const code = decision.reason === 'host_not_allowed' ? 'host_not_allowed' : 'policy_denied';
            throw new ProxyError(
              code,
              decision.reason,
              `${principal} may not ${method} ${target.protocol}//${host}:${port} (${decision.reason})`,
            );
          }
          const addr = await resolveDestination(host, port, { allowPrivate: deps.allowPrivate, lookup: deps.lookup });
          const body = await readBody(req, deps.maxRequestBytes);
          const headers = forwardableHeaders(req.headers);
          headers.host = target.host;
          const pool = deps.pools.get(target.protocol, host, addr, port);
          let upstream;
          try {
            upstream = await pool.request({
              method: method as 'GET',
              path: `${target.pathname}${target.search}`,
              headers,
              body: body.length > 0 || !['GET', 'HEAD'].includes(method) ? body : undefined,
              headersTimeout: deps.headersTimeoutMs,
              bodyTimeout: deps.bodyTimeoutMs,
            });
          } catch (err) {
            const c = (err as { code?: string }).code ?? '';
            if (c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_CONNECT_TIMEOUT') {
              throw new ProxyError('upstream_timeout', 'upstream_timeout', `${host}:${port} did not answer in time`);
            }
            throw new ProxyError('upstream_error', 'upstream_unreachable', `cannot reach ${host}:${port} (${c || (err as Error).message})`);
          }
          const outHeaders: Record<string, string | string[]> = {};
          const listed = connectionHeaderTokens(upstream.headers.connection);
          for (const [k, v] of Object.entries(upstream.headers)) {
            if (v === undefined || HOP_HEADERS.has(k) || listed.has(k)) continue;
            outHeaders[k] = v;
          }
          res.writeHead(upstream.statusCode, outHeaders);
          span.setAttribute('http.response.status_code', upstream.statusCode);
          try {
            for await (const chunk of upstream.body) {
              if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
            }
            res.end();
          } catch (err) {
            deps.log.warn({ host, err: (err as Error).message }, 'upstream body failed mid-stream');
            res.destroy();
          }
          finish({ allowed: true, reason: 'allowed', status: upstream.statusCode });
        } catch (err) {
          const te = err instanceof TalonError ? err : new TalonError('internal', 'internal error');
          const reason = err instanceof ProxyError || err instanceof DestinationRefused ? err.reason : 'internal';
          if (!(err instanceof TalonError)) deps.log.error({ err }, 'egress handler failed');
          span.setAttribute('talon.egress.reason', reason);
          // Drain what is left of the request so the connection can be reused.
          req.resume();
          sendError(res, te, reason);
          finish({ allowed: false, reason, status: te.httpStatus });
        }
      },
    );
  };
}
