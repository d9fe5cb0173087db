// grpc.health.v1 served from Talon's generated code (proto/grpc/health/v1/health.proto):
// the status of the server ("") and of each of its services, with Check, Watch and List
// as gRPC specifies them. It replaces a package that parsed the .proto at run time with
// protobufjs in every process: ≈85 ms of CPU at start and ≈13 MiB resident each.
import { status as GrpcStatus, type Server, type ServerWritableStream } from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus as Wire,
  HealthService,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthServer,
} from '@talon/proto';

export type HealthStatus = 'SERVING' | 'NOT_SERVING';

/** What a health answer says, read from the wire (the client side of the protocol). */
export type ReportedHealth = HealthStatus | 'UNKNOWN' | 'SERVICE_UNKNOWN';

const TO_WIRE: Record<HealthStatus, HealthCheckResponse['status']> = { SERVING: Wire.SERVING, NOT_SERVING: Wire.NOT_SERVING };

export function fromWire(s: HealthCheckResponse['status']): ReportedHealth {
  return s === Wire.SERVING
    ? 'SERVING'
    : s === Wire.NOT_SERVING
      ? 'NOT_SERVING'
      : s === Wire.SERVICE_UNKNOWN
        ? 'SERVICE_UNKNOWN'
        : 'UNKNOWN';
}

/** List answers at most this many services (the protocol's RESOURCE_EXHAUSTED beyond). */
const LIST_LIMIT = 100;

type Watcher = ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

export class HealthReporter {
  readonly #status = new Map<string, HealthStatus>();
  readonly #watchers = new Map<string, Set<Watcher>>();

  constructor(initial: Readonly<Record<string, HealthStatus>> = {}) {
    for (const [service, s] of Object.entries(initial)) this.#status.set(service, s);
  }

  /** Sets a service's status ("" for the server); Watch callers hear a change. */
  setStatus(service: string, status: HealthStatus): void {
    const changed = this.#status.get(service) !== status;
    this.#status.set(service, status);
    if (!changed) return;
    for (const call of this.#watchers.get(service) ?? []) call.write({ status: TO_WIRE[status] });
  }

  /** The status set for `service`, or undefined when it was never set. */
  status(service: string): HealthStatus | undefined {
    return this.#status.get(service);
  }

  /** Open Watch calls (for tests and shutdown). */
  get watching(): number {
    let n = 0;
    for (const set of this.#watchers.values()) n += set.size;
    return n;
  }

  addTo(server: Server): void {
    const impl: HealthServer = {
      check: (call, callback) => {
        const s = this.#status.get(call.request.service);
        if (s === undefined) callback({ code: GrpcStatus.NOT_FOUND, details: 'no health status for that service' }, null);
        else callback(null, { status: TO_WIRE[s] });
      },
      watch: (call) => {
        const service = call.request.service;
        let set = this.#watchers.get(service);
        if (!set) this.#watchers.set(service, (set = new Set()));
        set.add(call);
        const done = () => {
          set.delete(call);
          if (set.size === 0 && this.#watchers.get(service) === set) this.#watchers.delete(service);
        };
        call.on('cancelled', done);
        call.on('close', done);
        const s = this.#status.get(service);
        call.write({ status: s === undefined ? Wire.SERVICE_UNKNOWN : TO_WIRE[s] });
      },
      list: (_call, callback) => {
        if (this.#status.size > LIST_LIMIT) {
          callback({ code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'too many services to list' }, null);
          return;
        }
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [service, s] of this.#status) statuses[service] = { status: TO_WIRE[s] };
        callback(null, { statuses });
      },
    };
    server.addService(HealthService, impl);
  }
}
