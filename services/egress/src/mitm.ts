// CONNECT tunnels with TLS interception. The caller is authenticated and the
// tunnel's host:port checked against its policy before "200 Connection
// Established"; then egress terminates TLS with a certificate for exactly that
// host (from the interception CA) and runs every request inside the tunnel
// through the same pipeline as absolute-form requests.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { Logger } from '@talon/kit/log';
import { principalOf, type ProxyCredentials } from './auth.ts';
import type { LeafIssuer } from './ca.ts';
import { normalizeHost, hostMatches, type DestinationRule } from './policy.ts';
import { decision, type AuditSink } from './audit.ts';
import { ProxyError, type TunnelContext } from './proxy.ts';
import { recordRequest, type RecordScanner } from './record.ts';

export interface TunnelDeps {
  issuer: LeafIssuer;
  credentials: ProxyCredentials;
  rules: (principal: string) => readonly DestinationRule[];
  handle: (req: IncomingMessage, res: import('node:http').ServerResponse, tunnel: TunnelContext) => Promise<void>;
  /** Refuses a host name that carries credential material or names a metadata service (proxy.ts checkHostName). */
  checkHost: (rawHost: string, host: string, port: number) => void;
  /** Redacts what a refusal records (record.ts). */
  scanner: RecordScanner | undefined;
  audit: AuditSink;
  log: Logger;
  maxTunnels: number;
}

export function parseConnectTarget(authority: string | undefined): { host: string; rawHost: string; port: number } | undefined {
  if (!authority) return undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(authority);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: normalizeHost(m[1]!), rawHost: m[1]!, port };
}

export class Tunnels {
  private readonly issuer: LeafIssuer;
  private readonly credentials: ProxyCredentials;
  private readonly rules: TunnelDeps['rules'];
  private readonly handle: TunnelDeps['handle'];
  private readonly checkHost: TunnelDeps['checkHost'];
  private readonly scanner: RecordScanner | undefined;
  private readonly audit: AuditSink;
  private readonly log: Logger;
  private readonly maxTunnels: number;
  private readonly inner: Server;
  private readonly contexts = new WeakMap<object, TunnelContext>();
  private active = 0;
  readonly sockets = new Set<Duplex>();

  constructor(deps: TunnelDeps) {
    this.issuer = deps.issuer;
    this.credentials = deps.credentials;
    this.rules = deps.rules;
    this.handle = deps.handle;
    this.checkHost = deps.checkHost;
    this.scanner = deps.scanner;
    this.audit = deps.audit;
    this.log = deps.log;
    this.maxTunnels = deps.maxTunnels;
    this.inner = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
      const ctx = this.contexts.get(req.socket);
      if (!ctx) {
        res.writeHead(500).end();
        return;
      }
      void this.handle(req, res, ctx);
    });
  }

  get count(): number {
    return this.active;
  }

  private refuse(
    socket: Duplex,
    status: number,
    code: string,
    message: string,
    req: IncomingMessage,
    seen: { principal?: string; findings?: readonly string[]; target?: { host: string; port: number } } = {},
  ): void {
    const body = JSON.stringify({ error: { code, message } });
    const extra = status === 407 ? 'Proxy-Authenticate: Basic realm="talon-egress"\r\n' : '';
    socket.end(
      `HTTP/1.1 ${status} ${status === 407 ? 'Proxy Authentication Required' : status === 503 ? 'Service Unavailable' : status === 400 ? 'Bad Request' : 'Forbidden'}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nx-talon-egress-error: ${code}\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
    const parts = { host: seen.target?.host ?? '', path: '', query: '', headers: req.headers };
    this.audit.record(
      decision({
        ...recordRequest(this.scanner, parts),
        principal: seen.principal ?? '',
        method: 'CONNECT',
        scheme: 'https',
        port: seen.target?.port ?? 0,
        reason: code,
        status,
        via: 'tunnel',
        findings: [...(seen.findings ?? [])],
      }),
    );
  }

  /** Handler for the 'connect' event of an http(s) server. */
  onConnect = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    const who = principalOf(req, this.credentials);
    if (!who) return this.refuse(socket, 407, 'unauthenticated', 'egress needs a Talon client certificate or a proxy credential', req);
    const target = parseConnectTarget(req.url);
    if (!target) return this.refuse(socket, 400, 'invalid_argument', 'CONNECT needs host:port', req, { principal: who.principal });
    try {
      this.checkHost(target.rawHost, target.host, target.port);
    } catch (err) {
      if (!(err instanceof ProxyError)) throw err;
      return this.refuse(socket, 403, err.reason, err.message, req, { principal: who.principal, findings: err.findings, target });
    }
    // The method is checked per request inside; here only that some rule covers host:port.
    const rules = this.rules(who.principal).filter(
      (r) => r.principal === who.principal && hostMatches(r.host, target.host) && (r.port ?? 443) === target.port,
    );
    if (rules.length === 0)
      return this.refuse(socket, 403, 'host_not_allowed', `${who.principal} may not connect to ${target.host}:${target.port}`, req, {
        principal: who.principal,
        target,
      });
    if (this.active >= this.maxTunnels)
      return this.refuse(socket, 503, 'unavailable', `too many open tunnels (${this.maxTunnels}); retry shortly`, req, {
        principal: who.principal,
        target,
      });
    this.active += 1;
    this.sockets.add(socket);
    socket.once('close', () => {
      this.active -= 1;
      this.sockets.delete(socket);
    });
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    void this.issuer.contextFor(target.host).then(
      (secureContext) => {
        const tls = new TLSSocket(socket as import('node:net').Socket, {
          isServer: true,
          secureContext,
          ALPNProtocols: ['http/1.1'],
          // The certificate names the CONNECT host whatever SNI says; a mismatching SNI simply fails validation at the client.
          SNICallback: (_servername, cb) => cb(null, secureContext),
        });
        tls.on('error', () => tls.destroy());
        this.contexts.set(tls, { principal: who.principal, host: target.host, rawHost: target.rawHost, port: target.port });
        this.inner.emit('connection', tls);
      },
      (err: unknown) => {
        this.log.error({ err: (err as Error).message, host: target.host }, 'cannot issue interception certificate');
        socket.destroy();
      },
    );
  };

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.inner.close();
  }
}
