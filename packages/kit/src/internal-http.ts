// The internal HTTP port of every service: `GET /livez` and `GET /readyz` for
// Kubernetes, compose and load balancers, and `/metrics` (metrics.ts), on a small port that is
// never exposed publicly. Readiness is the same `Readiness` the gRPC health server
// reports (one owner), so both always agree.
// Probes are polled every few seconds forever: they log nothing, create no spans (no
// telemetry around them) and never read a request body.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenOn } from './ports.ts';
import type { ReadinessView } from './readiness.ts';

/** Where every service serves its metrics on this port (Prometheus scrapes it; docs/architecture.md §5 "Metrics"). */
export const METRICS_PATH = '/metrics';

export const LIVEZ_PATH = '/livez';
export const READYZ_PATH = '/readyz';

export interface InternalRequest {
  method: string;
  /** Request target as received (`/readyz?verbose`); the query is ignored. */
  url: string;
}

export interface InternalResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** An extra GET route (e.g. `/metrics` with Prometheus text); HEAD is derived from it. */
export type InternalRoute = () => InternalResponse | Promise<InternalResponse>;

/** A response of an extra route: text body, no caching, Content-Length set. */
export function internalResponse(status: number, contentType: string, body: string): InternalResponse {
  return reply(status, contentType, body);
}

export interface InternalHttpRoutesOptions {
  /** The service's readiness: GrpcServerHandle.readiness, the one gRPC health reports. */
  readiness: ReadinessView;
  /**
   * Facts the service adds to /readyz (the vault: `{ sealed }`). A hook that throws
   * makes the service not ready: a state it cannot report is a failed one.
   */
  facts?: () => Record<string, unknown>;
  /** False once shutdown has finished: /livez then answers 503. */
  alive?: () => boolean;
  /** More GET routes by path, e.g. `{ '/metrics': ... }`; the probe paths cannot be replaced. */
  routes?: Record<string, InternalRoute>;
}

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

function reply(status: number, contentType: string, body: string, extra: Record<string, string> = {}): InternalResponse {
  const length = String(Buffer.byteLength(body));
  return { status, headers: { 'content-type': contentType, 'content-length': length, 'cache-control': 'no-store', ...extra }, body };
}

/** The /readyz answer: 200 when SERVING, else 503, with what is missing and the service's facts. */
export function readyz(readiness: ReadinessView, facts?: () => Record<string, unknown>): InternalResponse {
  let extra: Record<string, unknown> = {};
  let factsFailed = false;
  try {
    extra = facts?.() ?? {};
  } catch {
    factsFailed = true;
  }
  const ready = readiness.state === 'SERVING' && !factsFailed;
  const body: Record<string, unknown> = { status: ready ? 'ready' : 'not_ready', missing: readiness.missing };
  if (factsFailed) body.error = 'the service could not report its state';
  // The service's facts never overwrite the two fields every probe reader relies on.
  for (const [k, v] of Object.entries(extra)) if (!(k in body)) body[k] = v;
  return reply(ready ? 200 : 503, JSON_TYPE, `${JSON.stringify(body)}\n`);
}

/** The /livez answer: 200 `ok` while the process runs its event loop, 503 once shutdown has finished. */
export function livez(alive = true): InternalResponse {
  return alive ? reply(200, TEXT, 'ok\n') : reply(503, TEXT, 'stopped\n');
}

/**
 * The whole routing of the internal port as a function of the request, without sockets:
 * probes, extra routes, HEAD (same status and headers, no body), 404 and 405.
 */
export function internalRoutes(opts: InternalHttpRoutesOptions): (req: InternalRequest) => Promise<InternalResponse> {
  const routes = new Map<string, InternalRoute>([
    [LIVEZ_PATH, () => livez(opts.alive?.() ?? true)],
    [READYZ_PATH, () => readyz(opts.readiness, opts.facts)],
  ]);
  for (const [path, route] of Object.entries(opts.routes ?? {})) {
    if (routes.has(path)) throw new Error(`internal HTTP route ${path} is already served by the probes`);
    if (!path.startsWith('/')) throw new Error(`internal HTTP route ${path} must start with /`);
    routes.set(path, route);
  }
  return async (req) => {
    const q = req.url.indexOf('?');
    const path = q === -1 ? req.url : req.url.slice(0, q);
    const route = routes.get(path);
    if (!route) return reply(404, TEXT, `not found; this port serves ${[...routes.keys()].join(', ')}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return reply(405, TEXT, 'method not allowed; use GET or HEAD\n', { allow: 'GET, HEAD' });
    let res: InternalResponse;
    try {
      res = await route();
    } catch {
      res = reply(500, TEXT, `${path} failed\n`);
    }
    // HEAD: the GET answer's status and headers (Content-Length included), no body.
    return req.method === 'HEAD' ? { ...res, body: '' } : res;
  };
}

export interface InternalHttpOptions extends InternalHttpRoutesOptions {
  /** Service name, named in a port-in-use error. */
  service: string;
  host: string;
  /** 0: any free port (the handle's `port` says which). */
  port: number;
  /** Variable that set the port, named when it is taken (default `<SERVICE>_INTERNAL_PORT`). */
  portKey?: string;
}

export interface InternalHttpHandle {
  readonly port: number;
  /** Stops listening and closes idle connections; /livez answers 503 on any connection still open. */
  close(): Promise<void>;
}

/** Serves the internal routes on host:port. A taken port is a ConfigError naming the variable. */
export async function startInternalHttp(opts: InternalHttpOptions): Promise<InternalHttpHandle> {
  let closed = false;
  const handle = internalRoutes({ ...opts, alive: () => !closed && (opts.alive?.() ?? true) });
  const server = createServer({ maxHeaderSize: 8 * 1024, requestTimeout: 10_000 }, (req: IncomingMessage, res: ServerResponse) => {
    // A probe never carries a body: one that comes with a body gets its answer and the
    // connection closed, rather than the body read.
    const length = req.headers['content-length'];
    const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    void handle({ method: req.method ?? 'GET', url: req.url ?? '/' }).then((r) => {
      res.writeHead(r.status, { ...r.headers, ...(hasBody ? { connection: 'close' } : {}) });
      res.end(r.body);
    });
  });
  server.keepAliveTimeout = 5_000;
  const port = await listenOn(server, {
    service: opts.service,
    key: opts.portKey ?? `${opts.service.toUpperCase()}_INTERNAL_PORT`,
    host: opts.host,
    port: opts.port,
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
