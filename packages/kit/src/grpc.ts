// gRPC over mutual TLS. The caller's identity is the SPIFFE URI SAN of its
// client certificate; each service declares which identities may call it, and
// handlers receive the verified caller. Every server also serves grpc.health.v1.
import { readFileSync } from 'node:fs';
import { checkServerIdentity as tlsCheckServerIdentity, type PeerCertificate } from 'node:tls';
import {
  Server,
  ServerCredentials,
  credentials,
  Metadata,
  status as GrpcStatus,
  type ChannelOptions,
  type Client,
  type ClientUnaryCall,
  type ClientReadableStream,
  type MethodDefinition,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type CallOptions,
  type ServiceError,
} from '@grpc/grpc-js';
import { HealthClient } from '@talon/proto';
import { HealthReporter, fromWire, type HealthStatus, type ReportedHealth } from './health.ts';
import { Readiness, type ReadinessView } from './readiness.ts';
import { SpanKind, context, extractRecord, injectRecord, tracer, SpanStatusCode, trace } from './telemetry.ts';
import { TalonError, asTalonError, toGrpcError, fromGrpcError, PermissionDenied } from './errors.ts';
import { identityFromSan, spiffeId } from './identity.ts';
import type { Logger } from './log.ts';
import { bindFree, isAddressInUse, portInUseError } from './ports.ts';

export { GrpcStatus, Metadata };

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export function readTls(files: TlsFiles): TlsMaterial {
  return { ca: readFileSync(files.caFile), cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
}

export interface CallContext {
  /** Verified workload name of the caller (from spiffe://talon/<name>). */
  readonly peer: string;
  readonly metadata: Metadata;
  readonly method: string;
}

export type UnaryHandler<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>;

/** The sending side of a server-streaming call. */
export interface ServerStream<Res> {
  /** Queues one message for the client. */
  write(res: Res): void;
  /** Aborted when the client cancels, the connection drops or the server shuts down. */
  readonly signal: AbortSignal;
}

/**
 * A server-streaming method: sends with `stream.write` and settles when the stream is done (the
 * call then ends with OK, or with the error it rejects with). Long-lived streams (a watch) create
 * no span: a span per open stream would be exported only at its end and says nothing while idle.
 */
export type ServerStreamHandler<Req, Res> = (req: Req, ctx: CallContext, stream: ServerStream<Res>) => Promise<void>;

/** Request type of a generated method definition (e.g. `MemoryServiceService['appendTurns']`). */
export type RequestOf<D> = D extends MethodDefinition<infer Req, any> ? Req : never;
/** Response type of a generated method definition. */
export type ResponseOf<D> = D extends MethodDefinition<any, infer Res> ? Res : never;
/** Method names of a generated service definition, as in it (e.g. `appendTurns`). */
export type MethodName<S extends ServiceDefinition> = keyof S & string;

/** One handler per method of a generated service definition, each typed by its method. */
export type Handlers<S extends ServiceDefinition> = {
  [M in MethodName<S>]: S[M] extends { responseStream: true }
    ? ServerStreamHandler<RequestOf<S[M]>, ResponseOf<S[M]>>
    : UnaryHandler<RequestOf<S[M]>, ResponseOf<S[M]>>;
};

/** Who may call: a fixed identity list, or a predicate per method (named as in the definition). */
export type Allow<M extends string = string> = readonly string[] | ((peer: string, method: M) => boolean);

export interface ServiceRegistration<S extends ServiceDefinition = ServiceDefinition> {
  /** A generated `XxxServiceService` definition. */
  definition: S;
  /** Map of method name (as in the generated definition, e.g. `appendTurns`) to handler. */
  handlers: NoInfer<Handlers<S>>;
  allow: NoInfer<Allow<MethodName<S>>>;
}

/** Registrations of `startGrpcServer`, each checked against its own definition. */
export type ServiceRegistrations<S extends readonly ServiceDefinition[]> = {
  readonly [K in keyof S]: ServiceRegistration<S[K]>;
};

function allowed(allow: Allow, peer: string, method: string): boolean {
  return typeof allow === 'function' ? allow(peer, method) : allow.includes(peer);
}

export function peerIdentity(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): string | undefined {
  const cert = call.getAuthContext()?.sslPeerCertificate as PeerCertificate | undefined;
  return identityFromSan(cert?.subjectaltname);
}

function metadataRecord(md: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) if (typeof v === 'string') out[k] = v;
  return out;
}

function wrapUnary(
  serviceName: string,
  method: string,
  handler: UnaryHandler<any, unknown>,
  allow: Allow,
  log: Logger,
): (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => void {
  return (call, cb) => {
    const peer = peerIdentity(call);
    const parent = extractRecord(metadataRecord(call.metadata));
    const span = tracer().startSpan(
      `${serviceName}/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': serviceName, 'rpc.method': method, 'talon.peer': peer ?? 'unknown' },
      },
      parent,
    );
    const finish = (err: unknown, res?: unknown): void => {
      if (err) {
        const te = asTalonError(err);
        if (!(err instanceof TalonError)) log.error({ err, method }, 'grpc handler failed');
        span.setAttribute('talon.error_code', te.code);
        span.setStatus({ code: SpanStatusCode.ERROR, message: te.code });
        span.end();
        cb(toGrpcError(te) as ServiceError, null);
        return;
      }
      span.end();
      cb(null, res);
    };
    if (!peer || !allowed(allow, peer, method)) {
      finish(new PermissionDenied(`caller ${peer ? spiffeId(peer) : 'without a Talon identity'} may not call ${serviceName}/${method}`));
      return;
    }
    const ctx: CallContext = { peer, metadata: call.metadata, method };
    context.with(trace.setSpan(parent, span), () => {
      handler(call.request, ctx).then(
        (res) => finish(null, res),
        (err: unknown) => finish(err),
      );
    });
  };
}

/** Open server streams, ended when the server shuts down (a graceful drain would wait on them forever). */
type OpenStreams = Set<() => void>;

function wrapServerStream(
  serviceName: string,
  method: string,
  handler: ServerStreamHandler<any, unknown>,
  allow: Allow,
  log: Logger,
  open: OpenStreams,
): (call: ServerWritableStream<unknown, unknown>) => void {
  return (call) => {
    const peer = peerIdentity(call);
    if (!peer || !allowed(allow, peer, method)) {
      const denied = new PermissionDenied(
        `caller ${peer ? spiffeId(peer) : 'without a Talon identity'} may not call ${serviceName}/${method}`,
      );
      call.emit('error', toGrpcError(denied));
      return;
    }
    const abort = new AbortController();
    const stop = () => abort.abort();
    open.add(stop);
    call.on('cancelled', stop);
    call.on('close', stop);
    const ctx: CallContext = { peer, metadata: call.metadata, method };
    const stream: ServerStream<unknown> = {
      write: (res) => {
        if (!abort.signal.aborted && call.writable) call.write(res);
      },
      signal: abort.signal,
    };
    const done = (err?: unknown): void => {
      open.delete(stop);
      const wasAborted = abort.signal.aborted;
      abort.abort();
      if (call.writableEnded || call.destroyed) return;
      if (err === undefined) {
        call.end();
        return;
      }
      const te = asTalonError(err);
      if (!(err instanceof TalonError) && !wasAborted) log.error({ err, method }, 'grpc stream handler failed');
      call.emit('error', toGrpcError(te));
    };
    handler(call.request, ctx, stream).then(
      () => done(),
      (err: unknown) => done(err),
    );
  };
}

export interface GrpcServerOptions<S extends readonly ServiceDefinition[] = readonly ServiceDefinition[]> {
  name: string;
  host: string;
  /** 0: any free port (the handle's `port` says which). */
  port: number;
  /** Variable that set the port, named when it is taken (default `<NAME>_GRPC_PORT`). */
  portKey?: string;
  tls: TlsMaterial;
  services: ServiceRegistrations<S>;
  log: Logger;
  /** Max inbound message size; default 4 MiB. */
  maxReceiveBytes?: number;
}

export interface GrpcServerHandle {
  readonly port: number;
  readonly health: HealthReporter;
  /** The state health reports; the internal HTTP /readyz reads the same (internal-http.ts). */
  readonly readiness: ReadinessView;
  /** SERVING once started, NOT_SERVING when shutting down; reported only while every dependency is up. */
  setServing(status: 'SERVING' | 'NOT_SERVING'): void;
  /** A dependency (NATS, the database) went away or came back: health follows (readiness.ts). */
  setDependency(name: string, up: boolean): void;
  /** Stops accepting calls and waits (up to timeoutMs) for in-flight calls. */
  shutdown(timeoutMs: number): Promise<void>;
}

/**
 * Serves the given generated services over mTLS. Each registration's handlers are typed by its
 * definition (a missing or mistyped handler does not compile; a missing one also fails here).
 */
export async function startGrpcServer<const S extends readonly ServiceDefinition[]>(opts: GrpcServerOptions<S>): Promise<GrpcServerHandle>;
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServerHandle> {
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxReceiveBytes ?? 4 * 1024 * 1024,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const health = new HealthReporter({ '': 'NOT_SERVING' });
  // grpc.health.v1 is served as is, outside wrapUnary: health checks and probes create no spans.
  health.addTo(server);
  const openStreams: OpenStreams = new Set();
  for (const reg of opts.services) {
    const impl: UntypedServiceImplementation = {};
    const serviceName = Object.values(reg.definition)[0]?.path.split('/')[1] ?? opts.name;
    for (const [method, def] of Object.entries(reg.definition)) {
      const h: UnaryHandler<any, unknown> | ServerStreamHandler<any, unknown> | undefined = reg.handlers[method];
      if (!h) throw new Error(`${opts.name}: no handler for ${serviceName}/${method}`);
      if (def.requestStream) throw new Error(`${opts.name}: client-streaming ${method} is not supported`);
      impl[method] = def.responseStream
        ? wrapServerStream(serviceName, method, h as ServerStreamHandler<any, unknown>, reg.allow, opts.log, openStreams)
        : wrapUnary(serviceName, method, h as UnaryHandler<any, unknown>, reg.allow, opts.log);
    }
    server.addService(reg.definition, impl);
    health.setStatus(serviceName, 'NOT_SERVING');
  }
  const creds = ServerCredentials.createSsl(opts.tls.ca, [{ private_key: opts.tls.key, cert_chain: opts.tls.cert }], true);
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const bind = (port: number) =>
    new Promise<number>((resolve, reject) => server.bindAsync(`${host}:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
  let port: number;
  try {
    port = await bindFree(opts.port, bind);
  } catch (err) {
    throw isAddressInUse(err)
      ? portInUseError(opts.name, opts.portKey ?? `${opts.name.toUpperCase()}_GRPC_PORT`, opts.host, opts.port)
      : err;
  }
  const serviceNames = opts.services.map((r) => Object.values(r.definition)[0]?.path.split('/')[1] ?? '');
  const readiness = new Readiness((status: HealthStatus) => {
    health.setStatus('', status);
    for (const n of serviceNames) health.setStatus(n, status);
  });
  return {
    port,
    health,
    readiness,
    setServing: (status) => readiness.setServing(status),
    setDependency: (name, up) => {
      readiness.setDependency(name, up);
      if (!up) opts.log.warn({ dependency: name }, `${name} unreachable; health NOT_SERVING until it is back`);
      else opts.log.info({ dependency: name }, `${name} reachable again`);
    },
    async shutdown(timeoutMs) {
      // Open streams end first (their handlers settle and the calls close with OK), so the drain
      // waits only for unary calls in flight.
      for (const stop of [...openStreams]) stop();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/** Channel options for clients: verify the server certificate names the expected workload. */
export function clientCredentials(tls: TlsMaterial, expectServer: string) {
  return credentials.createSsl(tls.ca, tls.key, tls.cert, {
    checkServerIdentity(hostname: string, cert: PeerCertificate) {
      const id = identityFromSan(cert.subjectaltname);
      if (id !== expectServer) {
        return new Error(`server certificate names ${id ? spiffeId(id) : 'no Talon identity'}, expected ${spiffeId(expectServer)}`);
      }
      return tlsCheckServerIdentity(hostname, cert);
    },
  });
}

const ROUND_ROBIN = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });

/**
 * Creates a client of a generated service constructor, pinned to the expected server identity.
 * `address` is `host:port`, or for replicas without a load balancer in front a comma-separated
 * list of IPv4 `host:port` (the test cluster on loopback; Kubernetes uses one Service name).
 */
export function createClient<C extends Client>(
  Ctor: new (address: string, creds: ReturnType<typeof clientCredentials>, options?: ChannelOptions) => C,
  address: string,
  tls: TlsMaterial,
  expectServer: string,
  options: ChannelOptions = {},
): C {
  const replicas = address.split(',').map((a) => a.trim());
  const target = replicas.length > 1 ? `ipv4:${replicas.join(',')}` : address;
  return new Ctor(target, clientCredentials(tls, expectServer), {
    ...DEFAULT_CHANNEL_OPTIONS,
    // Replicas (`host:port,host:port`): calls are spread over those that are up, and a dead one is skipped.
    ...(replicas.length > 1 ? { 'grpc.service_config': ROUND_ROBIN } : {}),
    // Certificates name the workload as a DNS SAN too; this keeps SNI a name, not an IP.
    'grpc.ssl_target_name_override': expectServer,
    'grpc.default_authority': expectServer,
    ...options,
  });
}

/** Adds trace context to outgoing metadata. */
export function tracedMetadata(extra?: Record<string, string>): Metadata {
  const md = new Metadata();
  const rec: Record<string, string> = {};
  injectRecord(rec);
  for (const [k, v] of Object.entries({ ...rec, ...extra })) md.set(k, v);
  return md;
}

export const DEFAULT_CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
};

/**
 * A unary method of a ts-proto generated grpc-js client, e.g. `client.appendTurns` (matched
 * against its last overload: request, metadata, options, callback).
 */
export type UnaryClientMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export interface UnaryCallOptions {
  /** Deadline from now; default 5 s. */
  timeoutMs?: number;
}

const methodNames = new WeakMap<object, string>();

/** The name of a client's method as in its generated definition (e.g. `appendTurns`), for spans. */
export function unaryMethodName(client: Client, method: UnaryClientMethod<never, unknown>): string {
  let name = methodNames.get(method);
  if (name === undefined) {
    const proto: object | null = Object.getPrototypeOf(client);
    const own = proto ? Object.entries(Object.getOwnPropertyDescriptors(proto)).find(([, d]) => d.value === method)?.[0] : undefined;
    const path: unknown = Reflect.get(method, 'path');
    name = own ?? (typeof path === 'string' ? (path.split('/').pop() ?? method.name) : method.name);
    methodNames.set(method, name);
  }
  return name;
}

/**
 * Calls a unary method of a generated client as a promise, typed by the method:
 * `await unary(client, client.appendTurns, { conversation, turns })`. Sets a deadline, carries
 * trace context in the metadata, and turns gRPC errors into TalonErrors (codes from the server).
 */
export function unary<Req, Res>(
  client: Client,
  method: UnaryClientMethod<Req, Res>,
  req: NoInfer<Req>,
  opts: UnaryCallOptions = {},
): Promise<Res> {
  return tracer().startActiveSpan(
    `grpc.client ${unaryMethodName(client, method)}`,
    { kind: SpanKind.CLIENT },
    (span) =>
      new Promise<Res>((resolve, reject) => {
        const deadline = new Date(Date.now() + (opts.timeoutMs ?? 5000));
        method.call(client, req, tracedMetadata(), { deadline }, (err, res) => {
          if (err) {
            const te = fromGrpcError(err);
            span.setStatus({ code: SpanStatusCode.ERROR, message: te.code });
            span.end();
            reject(te);
          } else {
            span.end();
            resolve(res);
          }
        });
      }),
  );
}

/**
 * A server-streaming method of a ts-proto generated grpc-js client, e.g. `client.watch` (matched
 * against its last overload: request, metadata, options).
 */
export type ServerStreamClientMethod<Req, Res> = (
  request: Req,
  metadata?: Metadata,
  options?: Partial<CallOptions>,
) => ClientReadableStream<Res>;

export interface OpenServerStream {
  /** Cancels the call; `end` is not called for a cancel asked for here. */
  cancel(): void;
}

/**
 * Opens a server-streaming call: `message` for each message, then `end` exactly once, with
 * undefined when the server closed the stream with OK, else the TalonError it failed with. No
 * deadline and no span: it is meant to stay open (a watch); keepalive pings notice a dead peer.
 */
export function serverStream<Req, Res>(
  client: Client,
  method: ServerStreamClientMethod<Req, Res>,
  req: NoInfer<Req>,
  on: { message: (res: Res) => void; end: (err: TalonError | undefined) => void },
): OpenServerStream {
  let done = false;
  const finish = (err: TalonError | undefined): void => {
    if (done) return;
    done = true;
    on.end(err);
  };
  const call = method.call(client, req, tracedMetadata(), {});
  call.on('data', (res: Res) => {
    if (!done) on.message(res);
  });
  call.on('error', (err: unknown) => finish(fromGrpcError(err)));
  // A non-OK status arrives as 'error' (just before 'status'); OK only as 'status'.
  call.on('status', (st: { code: number }) => {
    if (st.code === GrpcStatus.OK) finish(undefined);
  });
  return {
    cancel: () => {
      done = true;
      call.cancel();
    },
  };
}

/** Asks a server for its grpc.health.v1 status (empty service = overall). */
export function checkHealth(
  address: string,
  tls: TlsMaterial,
  expectServer: string,
  opts: { service?: string; timeoutMs?: number } = {},
): Promise<ReportedHealth> {
  const client = createClient(HealthClient, address, tls, expectServer);
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + (opts.timeoutMs ?? 2000));
    client.check({ service: opts.service ?? '' }, new Metadata(), { deadline }, (err, res) => {
      client.close();
      if (err) {
        if (err.code === GrpcStatus.NOT_FOUND) resolve('SERVICE_UNKNOWN');
        else reject(fromGrpcError(err));
        return;
      }
      resolve(fromWire(res.status));
    });
  });
}
