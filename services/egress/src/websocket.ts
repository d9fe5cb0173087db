// WebSockets through egress. An upgrade request is decided like any request: the
// caller's identity, the destination policy for its principal (ws: counts as http:,
// wss: as https:), the leak scan of URL and headers, placeholders in headers, URL path
// and query filled for the bound host and principal, the address checked. Only when the
// upstream accepted the upgrade is the caller's accepted, so a refusal is an ordinary
// HTTP error with egress's stable code. Then every frame the caller sends is scanned
// before it leaves (a leak closes both sides with 1008 and is recorded as a refused
// decision), and every frame coming back has vault secret values redacted.
// A placeholder inside a text frame the caller sends (a Discord IDENTIFY token) is filled
// only for a secret the vault bound to the WEBSOCKET_FRAME placement, this host and this
// principal, after the frame was scanned; each fill is recorded as a decision naming the
// secret. Anything refused in a frame closes both sides with 1008 and its reason.
//
// Callers send the upgrade in absolute form (GET wss://host/path), or in origin form
// with the target's Host and WEBSOCKET_SCHEME_HEADER (kit EgressClient.websocket).
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { LookupFunction } from 'node:net';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import { WEBSOCKET_SCHEME_HEADER } from '@talon/kit/egress';
import { scrub } from '@talon/kit/log';
import { extractRecord, SpanKind, withSpan } from '@talon/kit/telemetry';
import { decision, type DecisionInput } from './audit.ts';
import { applyFrameSecrets, applySecrets, findFramePlaceholders, findPlaceholders } from './placeholders.ts';
import {
  assertGranted,
  authorize,
  destination,
  findingLabels,
  forwardableHeaders,
  identify,
  ProxyError,
  refusal,
  releaseSecrets,
  sendProxyError,
  type Destination,
  type Exchange,
  type ProxyDeps,
} from './proxy.ts';
import { recordRequest } from './record.ts';
import { resolveDestination, type ResolvedAddress } from './resolve.ts';

/** Close code for a frame refused by the leak scan (RFC 6455 §7.4.1: policy violation). */
export const CLOSE_POLICY = 1008;

/** Handshake headers the upstream connection makes itself (ws), never copied from the caller. */
const HANDSHAKE = new Set([
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-accept',
  'sec-websocket-protocol',
  WEBSOCKET_SCHEME_HEADER,
]);

/**
 * The request target in absolute form with an http(s) scheme (policy speaks http/https),
 * from an absolute ws(s)/http(s) target or from origin form + Host + the scheme header.
 * Undefined: not a target egress understands (destination() then refuses it). Pure.
 */
export function upgradeTarget(url: string | undefined, host: string | undefined, schemeHeader: string | undefined): string | undefined {
  const u = url ?? '';
  const abs = /^(wss?|https?):\/\//i.exec(u);
  if (abs) return u.replace(/^wss:/i, 'https:').replace(/^ws:/i, 'http:');
  if (!u.startsWith('/') || !host) return undefined;
  const scheme = (schemeHeader ?? 'wss').toLowerCase();
  if (scheme !== 'ws' && scheme !== 'wss') return undefined;
  return `${scheme === 'wss' ? 'https' : 'http'}://${host}${u}`;
}

/** A lookup that always answers the address egress checked (no second resolution, no rebinding). */
export function pinnedLookup(addr: ResolvedAddress): LookupFunction {
  return (_host, opts, cb) => {
    if (opts.all) cb(null, [{ address: addr.address, family: addr.family }]);
    else cb(null, addr.address, addr.family);
  };
}

/** Sub-protocols the caller asked for (Sec-WebSocket-Protocol, comma-separated). */
function protocolsOf(h: string | string[] | undefined): string[] {
  return (Array.isArray(h) ? h.join(',') : (h ?? ''))
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export function createUpgradeHandler(deps: ProxyDeps) {
  // The caller's side of an accepted upgrade; no compression, so what is scanned is what is sent.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: deps.maxRequestBytes });

  return function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = Date.now();
    const base = decision({ method: 'GET', via: 'websocket' });
    const res = new ServerResponse(req);
    // Refusals are written as ordinary HTTP responses on the upgrade's socket.
    res.assignSocket(socket as Parameters<ServerResponse['assignSocket']>[0]);
    socket.on('error', () => undefined);
    const parent = extractRecord(req.headers as Record<string, string | string[] | undefined>);
    void withSpan('egress.websocket', { kind: SpanKind.SERVER, parent, attributes: { 'talon.egress.via': 'websocket' } }, async (span) => {
      base.traceId = span.spanContext().traceId;
      const x: Exchange = {
        req,
        res,
        tunnel: undefined,
        method: 'GET',
        span,
        base,
        parts: { host: '', path: '', query: '', headers: req.headers },
        resolved: new Map(),
      };
      const finish = (d: Partial<typeof base>) =>
        deps.audit.record({ ...base, ...recordRequest(deps.scanner, x.parts, x.scannedClean), ...d, durationMs: Date.now() - started });
      try {
        if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket')
          throw new ProxyError('invalid_argument', 'bad_upgrade', 'egress only upgrades to WebSocket (Upgrade: websocket)');
        if (deps.upstreams.mode !== 'direct')
          throw new ProxyError('invalid_argument', 'websocket_via_upstream_proxy', 'WebSockets are not relayed through an upstream proxy');
        const target = upgradeTarget(req.url, req.headers.host, headerOf(req, WEBSOCKET_SCHEME_HEADER));
        if (target) req.url = target;
        const principal = identify(deps, x);
        const dest = destination(deps, x);
        const granted = await authorize(deps, x, principal, dest);
        const headers = forwardableHeaders(req.headers);
        for (const k of Object.keys(headers)) if (HANDSHAKE.has(k)) delete headers[k];
        if (deps.scanner) {
          const findings = await deps.scanner.scanRequest({ url: dest.target.toString(), headers, body: Buffer.alloc(0) });
          if (findings.length > 0) {
            const ids = findingLabels(findings);
            throw new ProxyError(
              'policy_denied',
              'secret_leak_blocked',
              `egress blocked a WebSocket upgrade that carries credential material: ${ids.join(', ')}`,
              ids,
            );
          }
          x.scannedClean = { headers: new Set(Object.keys(headers)) };
        }
        const uses = findPlaceholders({ url: dest.target, headers, body: Buffer.alloc(0) });
        assertGranted(principal, uses, granted);
        const addr = await resolveDestination(dest.host, dest.port, { allowPrivate: deps.allowPrivate, lookup: deps.lookup });
        base.address = addr.address;
        await releaseSecrets(deps, x, principal, dest, uses);
        const filled = uses.length > 0 ? applySecrets({ url: dest.target, headers }, x.resolved) : { url: dest.target, headers };
        const upstream = await openUpstream(deps, filled.url, filled.headers, protocolsOf(req.headers['sec-websocket-protocol']), addr);
        for (const v of x.resolved.values()) v.fill(0);
        x.resolved.clear();
        wss.handleUpgrade(req, socket, head, (client) => {
          finish({ allowed: true, reason: 'allowed', status: 101 });
          relay(deps, { client, upstream, x, principal, dest, granted, record: finish });
        });
      } catch (err) {
        for (const v of x.resolved.values()) v.fill(0);
        const { te, reason } = refusal(deps, x, err);
        span.setAttribute('talon.egress.reason', reason);
        sendProxyError(res, te, reason);
        res.on('finish', () => socket.destroy());
        finish({ allowed: false, reason, status: te.code === 'unauthenticated' ? 407 : te.httpStatus });
      }
    });
  };
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Opens the upstream WebSocket to the checked address; resolves once the upstream accepted the upgrade. */
function openUpstream(
  deps: ProxyDeps,
  url: URL,
  headers: Record<string, string | string[]>,
  protocols: string[],
  addr: ResolvedAddress,
): Promise<WebSocket> {
  const wsUrl = new URL(url.toString());
  wsUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ca = deps.upstreams.trustedCa;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, protocols, {
      headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v])),
      lookup: pinnedLookup(addr),
      handshakeTimeout: deps.headersTimeoutMs,
      perMessageDeflate: false,
      maxPayload: deps.maxRequestBytes,
      followRedirects: false,
      ...(ca ? { ca: [...ca] } : {}),
    });
    // Paused until relay() listens: a platform may speak first (Discord's HELLO) in the same packet as the 101.
    ws.once('open', () => {
      ws.pause();
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, r) => {
      r.resume();
      ws.terminate();
      reject(new ProxyError('upstream_error', 'upgrade_refused', `${url.host} answered the WebSocket upgrade with HTTP ${r.statusCode}`));
    });
    ws.once('error', (err) => {
      reject(new ProxyError('upstream_error', 'upstream_unreachable', `cannot open a WebSocket to ${url.host} (${scrub(err.message)})`));
    });
  });
}

interface Pair {
  client: WebSocket;
  upstream: WebSocket;
  /** The upgrade's exchange: frames are decided in its name (principal, user, destination). */
  x: Exchange;
  principal: string;
  dest: Destination;
  /** Secret names a skill or MCP server was granted (undefined: a service, bound by the vault alone). */
  granted: ReadonlySet<string> | undefined;
  /** Records a decision about a frame (a fill, a refusal). */
  record: (d: Partial<DecisionInput>) => void;
}

/**
 * One frame the caller sends: scanned as it is (placeholders are names, not credentials),
 * then its placeholders filled for secrets bound to this host, principal and the frame
 * placement. Throws a ProxyError (or PlaceholderError) to refuse it.
 */
async function decideFrame(deps: ProxyDeps, p: Pair, frame: Buffer, isBinary: boolean): Promise<Buffer | string> {
  // The upgrade's exchange carries over; what a previous frame used or tripped does not.
  p.x.base.secrets = [];
  p.x.base.findings = [];
  const findings = deps.scanner ? await deps.scanner.scanRequest({ url: '', headers: {}, body: frame }) : [];
  if (findings.length > 0) {
    const ids = findingLabels(findings);
    p.x.base.findings = ids;
    throw new ProxyError(
      'policy_denied',
      'secret_leak_blocked',
      `egress blocked a WebSocket frame that carries credential material: ${ids.join(', ')}`,
      ids,
    );
  }
  const text = isBinary ? undefined : frame.toString('utf8');
  const uses = findFramePlaceholders(text ?? frame);
  if (uses.length === 0 || text === undefined) return frame;
  assertGranted(p.principal, uses, p.granted);
  try {
    await releaseSecrets(deps, p.x, p.principal, p.dest, uses);
    const filled = applyFrameSecrets(text, p.x.resolved);
    p.record({ allowed: true, reason: 'allowed', secrets: uses.map((u) => u.name), status: 101 });
    return filled;
  } finally {
    for (const v of p.x.resolved.values()) v.fill(0);
    p.x.resolved.clear();
  }
}

/**
 * Frames both ways, in order. Out: scanned (a leak closes both sides with 1008, nothing
 * of the frame is sent). In: vault secret values redacted. Closing or failing one side closes the other.
 */
function relay(deps: ProxyDeps, p: Pair): void {
  const { client, upstream } = p;
  let out: Promise<void> = Promise.resolve();
  const closeBoth = (code: number, reason: string) => {
    for (const ws of [client, upstream]) if (ws.readyState === WebSocket.OPEN) ws.close(code, reason);
  };
  client.on('message', (data, isBinary) => {
    const frame = toBuffer(data);
    // Scans may finish out of order (large frames go to the worker pool): send in arrival order.
    out = out.then(async () => {
      if (upstream.readyState !== WebSocket.OPEN) return;
      try {
        const toSend = await decideFrame(deps, p, frame, isBinary);
        if (upstream.readyState === WebSocket.OPEN) upstream.send(toSend, { binary: isBinary });
      } catch (err) {
        const { te, reason } = refusal(deps, p.x, err);
        deps.log.warn(
          { principal: p.principal, host: p.dest.host, reason, err: te.message },
          'egress closed a WebSocket: a frame was refused',
        );
        p.record({ allowed: false, reason, findings: p.x.base.findings, status: 101 });
        closeBoth(CLOSE_POLICY, reason);
      }
    });
  });
  upstream.on('message', (data, isBinary) => {
    if (client.readyState !== WebSocket.OPEN) return;
    const frame = toBuffer(data);
    if (!deps.scanner) return client.send(frame, { binary: isBinary });
    if (!isBinary) return client.send(deps.scanner.redactText(frame.toString('utf8')).text);
    const r = deps.scanner.createRedactor();
    client.send(Buffer.concat([r.push(frame), r.end()]), { binary: true });
  });
  // Close codes 1005/1006 cannot be sent; anything else is passed on.
  const passClose = (to: WebSocket) => (code: number, reason: Buffer) => {
    if (to.readyState !== WebSocket.OPEN) return;
    if (code === 1005 || code === 1006) to.close();
    else to.close(code, reason.toString('utf8').slice(0, 120));
  };
  client.on('close', passClose(upstream));
  upstream.on('close', passClose(client));
  client.on('error', () => upstream.terminate());
  upstream.on('error', () => client.terminate());
  upstream.resume();
}
