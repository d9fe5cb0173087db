// One request through egress, in this order:
//   caller identity -> destination policy -> body (capped) -> leak scan (before
//   injection) -> placeholders -> resolve + check address -> secrets from the
//   vault -> forward to the checked address -> stream the response back with any
//   secret value redacted -> audit.
// The decision names the end user when a workload acting for one says so
// (x-talon-user, acting-user.ts); that header never goes upstream.
// Refusals carry a stable code (x-talon-egress-error) and never echo a secret.
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable, type Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import { EGRESS_ERROR_HEADER, EGRESS_REASON_HEADER } from '@talon/kit/egress';
import { placementName } from '@talon/kit/placements';
import { extractRecord, SpanKind, withSpan, type Span } from '@talon/kit/telemetry';
import { isMcpServerName, MCP_HEADER, mcpPrincipal, parseSkillRef, SKILL_HEADER } from '@talon/kit/contracts';
import { scrub, type Logger } from '@talon/kit/log';
import { TalonError } from '@talon/kit/errors';
import type { SecretFingerprint } from '@talon/proto';
import { actingUser, EGRESS_USER_HEADER } from './acting-user.ts';
import { decision, type AuditSink, type DecisionInput } from './audit.ts';
import { isMetadataHostName } from './metadata-names.ts';
import { recordHeaders, recordRequest, type RecordScanner, type RequestParts } from './record.ts';
import { principalOf, type ProxyCredentials } from './auth.ts';
import { decideDestination, defaultPort, normalizeHost, type DestinationRule } from './policy.ts';
import { applySecrets, findPlaceholders, PlaceholderError, type PlaceholderUse } from './placeholders.ts';
import { DestinationRefused, resolveDestination, type Lookup, type ResolvedAddress } from './resolve.ts';
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
  SKILL_HEADER,
  MCP_HEADER,
  EGRESS_USER_HEADER,
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
export interface ScannerLike extends RecordScanner {
  /** Large bodies may be scanned off the event loop (a worker pool): then the findings arrive later. */
  scanRequest(req: {
    url: string;
    headers: Record<string, string | string[] | undefined>;
    body: Uint8Array;
  }): ScanFindingLike[] | Promise<ScanFindingLike[]>;
  /** Scans a destination host name as sent, its labels decoded (hex, base32, base64url), before any DNS lookup. */
  scanHost(host: string): ScanFindingLike[];
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
  /** Grants of `mcp:<server>` principals (the server's hosts and the secret names its headers use); none: refused. */
  mcpGrant?: (principal: string) => Promise<{ rules: readonly DestinationRule[]; secrets: ReadonlySet<string> } | { refused: string }>;
  /** Principals allowed to act for an MCP server with x-talon-mcp (the orchestrator). */
  mcpDelegates?: readonly string[];
}

export interface TunnelContext {
  principal: string;
  host: string;
  /** The CONNECT host as the caller wrote it (case kept), for the host-name scan. */
  rawHost: string;
  port: number;
}

export class ProxyError extends TalonError {
  readonly reason: string;
  /** Leak-scanner rule ids and `secret:<name>` labels behind a secret_leak_blocked refusal. */
  readonly findings: readonly string[];
  constructor(code: ConstructorParameters<typeof TalonError>[0], reason: string, message: string, findings: readonly string[] = []) {
    super(code, message);
    this.reason = reason;
    this.findings = findings;
  }
}

/** `secret:<name>` for a vault secret, the rule id otherwise: how findings are named in records and errors. */
export function findingLabels(findings: readonly ScanFindingLike[]): string[] {
  return [...new Set(findings.map((f) => (f.kind === 'secret' ? `secret:${f.id}` : f.id)))];
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
    [EGRESS_REASON_HEADER]: reason,
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

/** The host of an absolute-form request target as the caller wrote it (case kept), or '' when there is none. */
export function rawHostOf(url: string | undefined): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)/i.exec(url ?? '');
  return m?.[1] ?? '';
}

/**
 * Refuses, before any DNS lookup, a destination whose name carries credential
 * material (hex, base32 or base64url labels included) or names a cloud metadata
 * service (unless the operator listed it in TALON_EGRESS_ALLOW_PRIVATE).
 */
export function checkHostName(deps: Pick<ProxyDeps, 'scanner' | 'allowPrivate'>, rawHost: string, host: string, port: number): void {
  if (deps.scanner) {
    const seen = [rawHost, host].filter((h, i, all) => h !== '' && all.indexOf(h) === i);
    const findings = seen.flatMap((h) => deps.scanner!.scanHost(h));
    if (findings.length > 0) {
      const ids = findingLabels(findings);
      throw new ProxyError(
        'policy_denied',
        'secret_leak_blocked',
        `egress blocked a request whose destination host name carries credential material: ${ids.join(', ')}; it was not resolved`,
        ids,
      );
    }
  }
  if (isMetadataHostName(host) && !deps.allowPrivate.some((a) => normalizeHost(a.host) === host && a.port === port))
    throw new ProxyError(
      'policy_denied',
      'metadata_host',
      `${host} names a cloud metadata service; egress refuses it without resolving it`,
    );
}

/** One request in flight: what the steps below learn, and what the decision will record. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly tunnel: TunnelContext | undefined;
  readonly method: string;
  readonly span: Span;
  readonly base: DecisionInput;
  /** What the record shows of the request: built only by record.ts, from these parts, when the decision is final. */
  readonly parts: RequestParts;
  /** Set once the leak scan read the URL and these headers and found nothing. */
  scannedClean?: { headers: ReadonlySet<string> };
  /** Released secret values, zeroed as soon as the request is sent (or fails). */
  readonly resolved: Map<string, Buffer>;
}

export interface Destination {
  target: URL;
  host: string;
  port: number;
}

/** 1. Who is calling: the certificate or proxy credential, or the skill the sandbox acts for; and the user it acts for. */
export function identify(deps: ProxyDeps, x: Exchange): string {
  let principal: string;
  if (x.tunnel) principal = x.tunnel.principal;
  else {
    const who = principalOf(x.req, deps.credentials);
    if (!who)
      throw new ProxyError(
        'unauthenticated',
        'no_principal',
        'egress needs a Talon client certificate or a proxy credential (Proxy-Authorization)',
      );
    principal = who.principal;
  }
  x.base.principal = principal;
  // Checked against the caller's own identity: the sandbox names the user before it becomes skill:<id>.
  const acting = actingUser(principal, x.req.headers[EGRESS_USER_HEADER]);
  if ('refused' in acting)
    throw new ProxyError(acting.refused === 'bad_user_header' ? 'invalid_argument' : 'permission_denied', acting.refused, acting.message);
  const skill = x.req.headers[SKILL_HEADER];
  if (typeof skill === 'string') {
    if (!deps.skillDelegates.includes(principal))
      throw new ProxyError('permission_denied', 'skill_header_not_allowed', `${principal} may not act for a skill`);
    if (!parseSkillRef(skill)) throw new ProxyError('invalid_argument', 'bad_skill_header', 'x-talon-skill must be name@version');
    principal = `skill:${skill}`;
  }
  const mcp = x.req.headers[MCP_HEADER];
  if (mcp !== undefined) {
    if (typeof skill === 'string' || !(deps.mcpDelegates ?? []).includes(principal))
      throw new ProxyError('permission_denied', 'mcp_header_not_allowed', `${principal} may not act for an MCP server`);
    if (typeof mcp !== 'string' || !isMcpServerName(mcp))
      throw new ProxyError('invalid_argument', 'bad_mcp_header', 'x-talon-mcp must name one MCP server');
    principal = mcpPrincipal(mcp);
  }
  x.base.principal = principal;
  x.base.user = acting.user;
  x.span.setAttribute('talon.principal', principal);
  return principal;
}

/** 2. Where to: the absolute-form target (or the tunnel's host), its name checked before anything resolves it. */
export function destination(deps: ProxyDeps, x: Exchange): Destination {
  const { req, tunnel } = x;
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
  const host = normalizeHost(target.hostname);
  const port = target.port ? Number(target.port) : defaultPort(target.protocol);
  Object.assign(x.parts, { host, path: target.pathname, query: target.search });
  Object.assign(x.base, { scheme: target.protocol.replace(':', ''), port });
  if (target.username || target.password)
    throw new ProxyError(
      'invalid_argument',
      'userinfo_in_url',
      'URLs with user:password@ are refused; use a secret placeholder in a header',
    );
  // The host name is data leaving too (in DNS queries and Host): scanned before anything resolves it.
  checkHostName(deps, tunnel ? tunnel.rawHost : rawHostOf(req.url), host, port);
  x.span.setAttributes({ 'server.address': host, 'server.port': port, 'url.scheme': x.base.scheme });
  return { target, host, port };
}

/** 3. Policy for this principal; for a skill, also the secret names its grant allows. */
export async function authorize(deps: ProxyDeps, x: Exchange, principal: string, d: Destination): Promise<ReadonlySet<string> | undefined> {
  let rules: readonly DestinationRule[];
  let grantedSecrets: ReadonlySet<string> | undefined;
  if (principal.startsWith('skill:')) {
    const grant = await deps.skillGrant(principal);
    if ('refused' in grant) throw new ProxyError('policy_denied', grant.refused, `${principal} has no approved grant (${grant.refused})`);
    rules = grant.rules;
    grantedSecrets = grant.secrets;
  } else if (principal.startsWith('mcp:')) {
    const grant = deps.mcpGrant ? await deps.mcpGrant(principal) : { refused: 'mcp_registry_unavailable' };
    if ('refused' in grant) throw new ProxyError('policy_denied', grant.refused, `${principal} has no allowlist (${grant.refused})`);
    rules = grant.rules;
    grantedSecrets = grant.secrets;
  } else if (deps.skillDelegates.includes(principal)) {
    // The sandbox has no rights of its own: it always acts for a named skill.
    throw new ProxyError('policy_denied', 'skill_required', `${principal} requests must name the skill they act for (x-talon-skill)`);
  } else rules = deps.rules(principal);
  const verdict = decideDestination(rules, { principal, method: x.method, scheme: d.target.protocol, host: d.host, port: d.port });
  if (!verdict.allowed) {
    const code = verdict.reason === 'host_not_allowed' ? 'host_not_allowed' : 'policy_denied';
    throw new ProxyError(
      code,
      verdict.reason,
      `${principal} may not ${x.method} ${d.target.protocol}//${d.host}:${d.port} (${verdict.reason})`,
    );
  }
  return grantedSecrets;
}

/** 4. The body, then the leak scan of everything leaving — before any secret is put in. */
async function readAndScan(
  deps: ProxyDeps,
  x: Exchange,
  d: Destination,
): Promise<{ body: Buffer; headers: Record<string, string | string[]> }> {
  const body = await readBody(x.req, deps.maxRequestBytes);
  x.base.requestBodyBytes = body.length;
  const headers = forwardableHeaders(x.req.headers);
  if (!deps.scanner) return { body, headers };
  const findings = await deps.scanner.scanRequest({ url: d.target.toString(), headers, body });
  if (findings.length > 0) {
    const ids = findingLabels(findings);
    const where = [...new Set(findings.map((f) => `${f.location}${f.field ? `:${f.field}` : ''} (${f.encoding})`))].join(', ');
    throw new ProxyError(
      'policy_denied',
      'secret_leak_blocked',
      `egress blocked a request that carries credential material: ${ids.join(', ')} in ${where}`,
      ids,
    );
  }
  x.scannedClean = { headers: new Set(Object.keys(headers)) };
  return { body, headers };
}

/** 5. A skill or MCP server may use only the secret names its grant lists (a service: whatever the vault binds to it). */
export function assertGranted(principal: string, uses: readonly PlaceholderUse[], granted: ReadonlySet<string> | undefined): void {
  const ungranted = granted ? [...new Set(uses.filter((u) => !granted.has(u.name)).map((u) => u.name))] : [];
  if (ungranted.length > 0)
    throw new ProxyError('policy_denied', 'secret_not_granted', `${principal} was not granted secret(s) ${ungranted.join(', ')}`);
}

/** 6. Secrets from the vault, only now that everything else passed; the values land in x.resolved. */
export async function releaseSecrets(
  deps: ProxyDeps,
  x: Exchange,
  principal: string,
  d: Destination,
  uses: readonly PlaceholderUse[],
): Promise<void> {
  x.base.secrets = [...new Set(uses.map((u) => u.name))];
  await Promise.all(
    uses.map(async (u) => {
      if (x.resolved.has(u.name)) return;
      try {
        const value = await deps.vault.resolve({
          name: u.name,
          principal,
          host: d.host,
          port: d.port,
          placement: u.placement,
          field: u.field,
          requestId: x.base.traceId,
        });
        x.resolved.set(u.name, value);
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
}

/** 7. Forward to the checked address; released values are zeroed once the request is sent. */
async function forward(
  deps: ProxyDeps,
  x: Exchange,
  d: Destination,
  addr: ResolvedAddress,
  out: { url: URL; headers: Record<string, string | string[]>; body: Buffer },
): Promise<Dispatcher.ResponseData> {
  const dispatcher = deps.upstreams.dispatcherFor(d.target.protocol, d.host, addr, d.port);
  const t0 = Date.now();
  try {
    const upstream = await dispatcher.request({
      origin: `${d.target.protocol}//${d.target.host}`,
      method: x.method as Dispatcher.HttpMethod,
      path: `${out.url.pathname}${out.url.search}`,
      headers: out.headers,
      body: out.body.length > 0 || !['GET', 'HEAD'].includes(x.method) ? out.body : undefined,
      headersTimeout: deps.headersTimeoutMs,
      bodyTimeout: deps.bodyTimeoutMs,
    });
    x.base.waitMs = Date.now() - t0;
    return upstream;
  } catch (err) {
    const c = (err as { code?: string }).code ?? '';
    if (c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_CONNECT_TIMEOUT')
      throw new ProxyError('upstream_timeout', 'upstream_timeout', `${d.host}:${d.port} did not answer in time`);
    throw new ProxyError(
      'upstream_error',
      'upstream_unreachable',
      `cannot reach ${d.host}:${d.port} (${c || scrub((err as Error).message)})`,
    );
  } finally {
    for (const v of x.resolved.values()) v.fill(0);
  }
}

function decoderFor(contentEncoding: string): Transform | undefined {
  const encoding = contentEncoding.toLowerCase();
  if (encoding === 'gzip' || encoding === 'x-gzip') return createGunzip();
  if (encoding === 'deflate') return createInflate();
  if (encoding === 'br') return createBrotliDecompress();
  return undefined;
}

/** 8. The response, streamed back with secret values redacted wherever they appear. */
async function relayResponse(
  deps: ProxyDeps,
  x: Exchange,
  principal: string,
  d: Destination,
  upstream: Dispatcher.ResponseData,
): Promise<{ bytes: number; redactions: number }> {
  const listed = connectionTokens(upstream.headers.connection);
  const outHeaders: Record<string, string | string[]> = {};
  let redactions = 0;
  const decode = decoderFor(String(upstream.headers['content-encoding'] ?? ''));
  const scanner = deps.scanner;
  const redact = (v: string) => {
    const r = scanner!.redactText(v);
    redactions += r.redactions;
    return r.text;
  };
  for (const [k, v] of Object.entries(upstream.headers)) {
    if (v === undefined || HOP_HEADERS.has(k) || listed.has(k)) continue;
    if (decode && (k === 'content-encoding' || k === 'content-length')) continue;
    outHeaders[k] = scanner && k !== 'content-length' ? (Array.isArray(v) ? v.map(redact) : redact(v)) : v;
  }
  const redactor = scanner?.createRedactor();
  // Redaction may shorten the body; the length is known only at the end.
  if (redactor) delete outHeaders['content-length'];
  x.res.writeHead(upstream.statusCode, outHeaders);
  x.span.setAttribute('http.response.status_code', upstream.statusCode);
  // Response headers were redacted of secret values above; the record scrubs credential shapes too.
  x.base.responseHeaders = recordHeaders(undefined, outHeaders);
  let bytes = 0;
  const source: AsyncIterable<Buffer> & Readable = decode ? Readable.from(upstream.body).pipe(decode) : upstream.body;
  // A caller that goes away releases the upstream at once (an idle event stream would hold it until the body timeout).
  let callerGone = false;
  const onClose = () => {
    if (x.res.writableFinished) return;
    callerGone = true;
    upstream.body.destroy();
    source.destroy();
  };
  x.res.once('close', onClose);
  try {
    for await (const chunk of source) {
      const out = redactor ? redactor.push(chunk) : chunk;
      bytes += out.length;
      if (out.length > 0 && !x.res.write(out)) await new Promise((r) => x.res.once('drain', r));
    }
    if (redactor) {
      const tail = redactor.end();
      bytes += tail.length;
      if (tail.length > 0) x.res.write(tail);
      redactions += redactor.redactions;
    }
    x.res.end();
  } catch (err) {
    if (!callerGone) deps.log.warn({ host: d.host, err: scrub((err as Error).message) }, 'upstream body failed mid-stream');
    x.res.destroy();
  } finally {
    x.res.off('close', onClose);
  }
  if (redactions > 0) deps.log.warn({ host: d.host, principal, redactions }, 'secret values in a response were redacted');
  x.span.setAttribute('talon.egress.redactions', redactions);
  return { bytes, redactions };
}

/** A refusal: the stable code and reason for the caller and the record, never a value. */
export function refusal(deps: ProxyDeps, x: Exchange, err: unknown): { te: TalonError; reason: string } {
  if (err instanceof ProxyError || err instanceof DestinationRefused) {
    if (err instanceof ProxyError && err.findings.length > 0) x.base.findings = [...err.findings];
    return { te: err, reason: err.reason };
  }
  if (err instanceof PlaceholderError) return { te: new TalonError('invalid_argument', err.message), reason: err.reason };
  if (err instanceof TalonError) return { te: err, reason: err.code };
  deps.log.error({ err }, 'egress handler failed');
  return { te: new TalonError('internal', 'internal error'), reason: 'internal' };
}

export function createProxyHandler(deps: ProxyDeps) {
  return async function handle(req: IncomingMessage, res: ServerResponse, tunnel?: TunnelContext): Promise<void> {
    const started = Date.now();
    const method = (req.method ?? 'GET').toUpperCase();
    const base: DecisionInput = decision({ method, via: tunnel ? 'tunnel' : 'absolute' });
    // The caller's trace continues here (its traceparent header is never forwarded upstream).
    const parent = extractRecord(req.headers as Record<string, string | string[] | undefined>);
    await withSpan(
      'egress.request',
      { kind: SpanKind.SERVER, parent, attributes: { 'http.request.method': method, 'talon.egress.via': base.via } },
      async (span) => {
        base.traceId = span.spanContext().traceId;
        const x: Exchange = {
          req,
          res,
          tunnel,
          method,
          span,
          base,
          parts: { host: '', path: '', query: '', headers: req.headers },
          resolved: new Map(),
        };
        const finish = (d: Partial<DecisionInput>) =>
          deps.audit.record({ ...base, ...recordRequest(deps.scanner, x.parts, x.scannedClean), ...d, durationMs: Date.now() - started });
        try {
          const principal = identify(deps, x);
          const dest = destination(deps, x);
          const grantedSecrets = await authorize(deps, x, principal, dest);
          const { body, headers } = await readAndScan(deps, x, dest);
          // 5. Placeholders (a skill only for granted names) and the address to connect to.
          const uses = findPlaceholders({ url: dest.target, headers, body });
          assertGranted(principal, uses, grantedSecrets);
          const addr = await resolveDestination(dest.host, dest.port, { allowPrivate: deps.allowPrivate, lookup: deps.lookup });
          base.address = addr.address;
          await releaseSecrets(deps, x, principal, dest, uses);
          const filled = uses.length > 0 ? applySecrets({ url: dest.target, headers }, x.resolved) : { url: dest.target, headers };
          filled.headers.host = dest.target.host;
          // Egress reads every response to redact secrets; ask for it uncompressed.
          filled.headers['accept-encoding'] = 'identity';
          const upstream = await forward(deps, x, dest, addr, { ...filled, body });
          const sent = await relayResponse(deps, x, principal, dest, upstream);
          finish({
            allowed: true,
            reason: 'allowed',
            status: upstream.statusCode,
            responseBodyBytes: sent.bytes,
            redactions: sent.redactions,
          });
        } catch (err) {
          for (const v of x.resolved.values()) v.fill(0);
          const { te, reason } = refusal(deps, x, err);
          span.setAttribute('talon.egress.reason', reason);
          req.resume();
          sendProxyError(res, te, reason);
          finish({ allowed: false, reason, status: te.code === 'unauthenticated' ? 407 : te.httpStatus });
        }
      },
    );
  };
}
