// One request through egress, in this order:
//   caller identity -> destination policy -> body (capped) -> leak scan (before
//   injection) -> placeholders -> resolve + check address -> secrets from the
//   vault -> forward to the checked address -> stream the response back with any
//   secret value redacted -> audit.
// Refusals carry a stable code (x-talon-egress-error) and never echo a secret.
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { EGRESS_ERROR_HEADER, extractRecord, scrub, SpanKind, TalonError, withSpan, type Logger } from '@talon/kit';
import { Placement, type Header, type SecretFingerprint } from '@talon/proto';
import { decision, type AuditSink, type DecisionInput } from './audit.ts';
import { principalOf, type ProxyCredentials } from './auth.ts';
import { decideDestination, defaultPort, normalizeHost, type DestinationRule } from './policy.ts';
import { applySecrets, findPlaceholders, PlaceholderError } from './placeholders.ts';
import { DestinationRefused, resolveDestination, type Lookup } from './resolve.ts';
import type { Upstreams } from './upstream.ts';
import type { VaultApi } from './vault-client.ts';

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
  'x-talon-skill',
]);

/** What the leak scanner provides to the proxy (services/egress/src/scan). */
export interface ScanFindingLike {
  kind: string;
  id: string;
  location: string;
  field?: string;
  encoding: string;
}
export interface RedactorLike {
  push(chunk: Uint8Array): Uint8Array;
  end(): Uint8Array;
  readonly redactions: number;
}
export interface ScannerLike {
  scanRequest(req: { url: string; headers: Record<string, string | string[] | undefined>; body: Uint8Array }): ScanFindingLike[];
  setFingerprints(fps: readonly SecretFingerprint[]): void;
  /** A streaming redactor of every vault secret value in its encoded forms. */
  createRedactor(): RedactorLike;
  /** Redacts secret values inside a header value. */
  redactText(text: string): { text: string; redactions: number };
}

export interface ProxyDeps {
  rules: (principal: string) => readonly DestinationRule[];
  /** Grants of `skill:name@version` principals (hosts and secret names the operator approved). */
  skillGrant: (principal: string) => Promise<{ rules: readonly DestinationRule[]; secrets: ReadonlySet<string> } | { refused: string }>;
  allowPrivate: ReadonlyArray<{ host: string; port: number }>;
  lookup: Lookup;
  upstreams: Upstreams;
  audit: AuditSink;
  log: Logger;
  credentials: ProxyCredentials;
  vault: VaultApi;
  scanner: ScannerLike | undefined;
  maxRequestBytes: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Principals allowed to act for a skill with x-talon-skill (the sandbox). */
  skillDelegates: readonly string[];
}

export interface TunnelContext {
  principal: string;
  host: string;
  port: number;
}

export class ProxyError extends TalonError {
  readonly reason: string;
  constructor(code: ConstructorParameters<typeof TalonError>[0], reason: string, message: string) {
    super(code, message);
    this.reason = reason;
  }
}

export function sendProxyError(res: ServerResponse, err: TalonError, reason: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code: err.code, reason, message: err.message } });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [EGRESS_ERROR_HEADER]: err.code,
    'x-talon-egress-reason': reason,
  };
  if (err.code === 'unauthenticated') headers['proxy-authenticate'] = 'Basic realm="talon-egress"';
  res.writeHead(err.code === 'unauthenticated' ? 407 : err.httpStatus, headers);
  res.end(body);
}

function connectionTokens(h: string | string[] | undefined): Set<string> {
  const raw = Array.isArray(h) ? h.join(',') : (h ?? '');
  return new Set(
    raw
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== ''),
  );
}

export function forwardableHeaders(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection);
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

function recordHeaders(h: Record<string, string | string[] | undefined>): Header[] {
  const out: Header[] = [];
  for (const [name, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const lower = name.toLowerCase();
    for (const value of Array.isArray(v) ? v : [v]) {
      // Placeholders are kept (they are names, not values); everything else credential-shaped is scrubbed.
      const keep = /\{\{\s*secret:[a-z0-9_]+\s*\}\}/.test(value);
      out.push({ name: lower, value: lower === 'proxy-authorization' || lower === 'cookie' ? '[REDACTED]' : keep ? value : scrub(value) });
    }
  }
  return out;
}

function placementName(p: Placement): string {
  switch (p) {
    case Placement.PLACEMENT_BEARER:
      return 'bearer';
    case Placement.PLACEMENT_BASIC:
      return 'basic';
    case Placement.PLACEMENT_HEADER:
      return 'header';
    case Placement.PLACEMENT_QUERY:
      return 'query';
    case Placement.PLACEMENT_PATH:
      return 'path';
    default:
      return 'unspecified';
  }
}

export function createProxyHandler(deps: ProxyDeps) {
  return async function handle(req: IncomingMessage, res: ServerResponse, tunnel?: TunnelContext): Promise<void> {
    const started = Date.now();
    const method = (req.method ?? 'GET').toUpperCase();
    const base: DecisionInput = decision({ method, via: tunnel ? 'tunnel' : 'absolute', requestHeaders: recordHeaders(req.headers) });
    const finish = (d: Partial<DecisionInput>) => deps.audit.record({ ...base, ...d, durationMs: Date.now() - started });
    const resolved = new Map<string, Buffer>();

    // The caller's trace continues here (its traceparent header is never forwarded upstream).
    const parent = extractRecord(req.headers as Record<string, string | string[] | undefined>);
    await withSpan(
      'egress.request',
      { kind: SpanKind.SERVER, parent, attributes: { 'http.request.method': method, 'talon.egress.via': base.via } },
      async (span) => {
        base.traceId = span.spanContext().traceId;
        try {
          // 1. Who is calling.
          let principal: string;
          if (tunnel) principal = tunnel.principal;
          else {
            const who = principalOf(req, deps.credentials);
            if (!who)
              throw new ProxyError(
                'unauthenticated',
                'no_principal',
                'egress needs a Talon client certificate or a proxy credential (Proxy-Authorization)',
              );
            principal = who.principal;
          }
          const skill = req.headers['x-talon-skill'];
          if (typeof skill === 'string') {
            if (!deps.skillDelegates.includes(principal))
              throw new ProxyError('permission_denied', 'skill_header_not_allowed', `${principal} may not act for a skill`);
            if (!/^[a-z0-9][a-z0-9._-]{0,63}@[0-9A-Za-z.+-]{1,32}$/.test(skill))
              throw new ProxyError('invalid_argument', 'bad_skill_header', 'x-talon-skill must be name@version');
            principal = `skill:${skill}`;
          }
          base.principal = principal;
          span.setAttribute('talon.principal', principal);

          // 2. Where to.
          let target: URL;
          try {
            target = tunnel
              ? new URL(
                  `https://${tunnel.host.includes(':') ? `[${tunnel.host}]` : tunnel.host}:${tunnel.port}${req.url?.startsWith('/') ? req.url : '/'}`,
                )
              : new URL(req.url ?? '');
          } catch {
            throw new ProxyError(
              'invalid_argument',
              'not_absolute_form',
              'egress is a forward proxy: send the request target in absolute form (https://host/path) or use CONNECT',
            );
          }
          if (tunnel && req.url && !req.url.startsWith('/')) {
            const inner = new URL(req.url);
            if (normalizeHost(inner.hostname) !== normalizeHost(tunnel.host))
              throw new ProxyError('policy_denied', 'tunnel_host_mismatch', 'a request inside a tunnel must go to the tunnel host');
          }
          if (target.username || target.password)
            throw new ProxyError(
              'invalid_argument',
              'userinfo_in_url',
              'URLs with user:password@ are refused; use a secret placeholder in a header',
            );
          const host = normalizeHost(target.hostname);
          const port = target.port ? Number(target.port) : defaultPort(target.protocol);
          Object.assign(base, { scheme: target.protocol.replace(':', ''), host, port, path: target.pathname, query: scrub(target.search) });
          span.setAttributes({ 'server.address': host, 'server.port': port, 'url.scheme': base.scheme });

          // 3. Policy for this principal.
          let rules: readonly DestinationRule[];
          let grantedSecrets: ReadonlySet<string> | undefined;
          if (principal.startsWith('skill:')) {
            const grant = await deps.skillGrant(principal);
            if ('refused' in grant)
              throw new ProxyError('policy_denied', grant.refused, `${principal} has no approved grant (${grant.refused})`);
            rules = grant.rules;
            grantedSecrets = grant.secrets;
          } else if (deps.skillDelegates.includes(principal)) {
            // The sandbox has no rights of its own: it always acts for a named skill.
            throw new ProxyError(
              'policy_denied',
              'skill_required',
              `${principal} requests must name the skill they act for (x-talon-skill)`,
            );
          } else rules = deps.rules(principal);
          const decision = decideDestination(rules, { principal, method, scheme: target.protocol, host, port });
          if (!decision.allowed) {
            const code = decision.reason === 'host_not_allowed' ? 'host_not_allowed' : 'policy_denied';
            throw new ProxyError(
              code,
              decision.reason,
              `${principal} may not ${method} ${target.protocol}//${host}:${port} (${decision.reason})`,
            );
          }

          // 4. Body, then the leak scan of everything leaving — before any secret is put in.
          const body = await readBody(req, deps.maxRequestBytes);
          base.requestBodyBytes = body.length;
          const headers = forwardableHeaders(req.headers);
          if (deps.scanner) {
            const findings = deps.scanner.scanRequest({ url: target.toString(), headers, body });
            if (findings.length > 0) {
              base.findings = [...new Set(findings.map((f) => (f.kind === 'secret' ? `secret:${f.id}` : f.id)))];
              const where = [...new Set(findings.map((f) => `${f.location}${f.field ? `:${f.field}` : ''} (${f.encoding})`))].join(', ');
              throw new ProxyError(
                'policy_denied',
                'secret_leak_blocked',
                `egress blocked a request that carries credential material: ${base.findings.join(', ')} in ${where}`,
              );
            }
          }

          // 5. Placeholders and the address to connect to.
          const uses = findPlaceholders({ url: target, headers, body });
          const ungranted = grantedSecrets ? uses.filter((u) => !grantedSecrets.has(u.name)).map((u) => u.name) : [];
          if (ungranted.length > 0) {
            throw new ProxyError(
              'policy_denied',
              'secret_not_granted',
              `${principal} was not granted secret(s) ${[...new Set(ungranted)].join(', ')}`,
            );
          }
          const addr = await resolveDestination(host, port, { allowPrivate: deps.allowPrivate, lookup: deps.lookup });
          base.address = addr.address;

          // 6. Secrets from the vault, only now that everything else passed.
          const names = [...new Set(uses.map((u) => u.name))];
          base.secrets = names;
          await Promise.all(
            uses.map(async (u) => {
              if (resolved.has(u.name)) return;
              try {
                resolved.set(
                  u.name,
                  await deps.vault.resolve({
                    name: u.name,
                    principal,
                    host,
                    port,
                    placement: u.placement,
                    field: u.field,
                    requestId: base.traceId,
                  }),
                );
              } catch (err) {
                if (err instanceof TalonError) {
                  throw new ProxyError(
                    err.code,
                    err.code === 'unavailable' || err.code === 'vault_sealed' ? err.code : `secret_${err.code}`,
                    `secret ${u.name} (${placementName(u.placement)}${u.field ? ` ${u.field}` : ''}): ${err.message}`,
                  );
                }
                throw err;
              }
            }),
          );
          const filled = uses.length > 0 ? applySecrets({ url: target, headers }, resolved) : { url: target, headers };
          filled.headers.host = target.host;
          // Egress reads every response to redact secrets; ask for it uncompressed.
          filled.headers['accept-encoding'] = 'identity';

          // 7. Forward to the checked address.
          const dispatcher = deps.upstreams.dispatcherFor(target.protocol, host, addr, port);
          let upstream: Dispatcher.ResponseData;
          const t0 = Date.now();
          try {
            upstream = await dispatcher.request({
              origin: `${target.protocol}//${target.host}`,
              method: method as Dispatcher.HttpMethod,
              path: `${filled.url.pathname}${filled.url.search}`,
              headers: filled.headers,
              body: body.length > 0 || !['GET', 'HEAD'].includes(method) ? body : undefined,
              headersTimeout: deps.headersTimeoutMs,
              bodyTimeout: deps.bodyTimeoutMs,
            });
          } catch (err) {
            const c = (err as { code?: string }).code ?? '';
            if (c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_CONNECT_TIMEOUT')
              throw new ProxyError('upstream_timeout', 'upstream_timeout', `${host}:${port} did not answer in time`);
            throw new ProxyError(
              'upstream_error',
              'upstream_unreachable',
              `cannot reach ${host}:${port} (${c || scrub((err as Error).message)})`,
            );
          } finally {
            for (const v of resolved.values()) v.fill(0);
          }
          base.waitMs = Date.now() - t0;

          // 8. The response, with secret values redacted wherever they appear.
          const listed = connectionTokens(upstream.headers.connection);
          const outHeaders: Record<string, string | string[]> = {};
          let redactions = 0;
          const encoding = String(upstream.headers['content-encoding'] ?? '').toLowerCase();
          const decode =
            encoding === 'gzip' || encoding === 'x-gzip'
              ? createGunzip()
              : encoding === 'deflate'
                ? createInflate()
                : encoding === 'br'
                  ? createBrotliDecompress()
                  : undefined;
          for (const [k, v] of Object.entries(upstream.headers)) {
            if (v === undefined || HOP_HEADERS.has(k) || listed.has(k)) continue;
            if (decode && (k === 'content-encoding' || k === 'content-length')) continue;
            if (deps.scanner && k !== 'content-length') {
              const redact = (s: string) => {
                const r = deps.scanner!.redactText(s);
                redactions += r.redactions;
                return r.text;
              };
              outHeaders[k] = Array.isArray(v) ? v.map(redact) : redact(v);
            } else outHeaders[k] = v;
          }
          const redactor = deps.scanner?.createRedactor();
          // Redaction may shorten the body; the length is known only at the end.
          if (redactor) delete outHeaders['content-length'];
          res.writeHead(upstream.statusCode, outHeaders);
          span.setAttribute('http.response.status_code', upstream.statusCode);
          base.responseHeaders = recordHeaders(outHeaders);
          let bytes = 0;
          const source: AsyncIterable<Buffer> = decode
            ? (Readable.from(upstream.body).pipe(decode) as AsyncIterable<Buffer>)
            : (upstream.body as AsyncIterable<Buffer>);
          try {
            for await (const chunk of source) {
              const out = redactor ? redactor.push(chunk) : chunk;
              bytes += out.length;
              if (out.length > 0 && !res.write(out)) await new Promise((r) => res.once('drain', r));
            }
            if (redactor) {
              const tail = redactor.end();
              bytes += tail.length;
              if (tail.length > 0) res.write(tail);
              redactions += redactor.redactions;
            }
            res.end();
          } catch (err) {
            deps.log.warn({ host, err: scrub((err as Error).message) }, 'upstream body failed mid-stream');
            res.destroy();
          }
          if (redactions > 0) deps.log.warn({ host, principal, redactions }, 'secret values in a response were redacted');
          span.setAttribute('talon.egress.redactions', redactions);
          finish({ allowed: true, reason: 'allowed', status: upstream.statusCode, responseBodyBytes: bytes, redactions });
        } catch (err) {
          for (const v of resolved.values()) v.fill(0);
          let te: TalonError;
          let reason: string;
          if (err instanceof ProxyError || err instanceof DestinationRefused) {
            te = err;
            reason = err.reason;
          } else if (err instanceof PlaceholderError) {
            te = new TalonError('invalid_argument', err.message);
            reason = err.reason;
          } else if (err instanceof TalonError) {
            te = err;
            reason = err.code;
          } else {
            deps.log.error({ err }, 'egress handler failed');
            te = new TalonError('internal', 'internal error');
            reason = 'internal';
          }
          span.setAttribute('talon.egress.reason', reason);
          req.resume();
          sendProxyError(res, te, reason);
          finish({ allowed: false, reason, status: te.code === 'unauthenticated' ? 407 : te.httpStatus });
        }
      },
    );
  };
}
