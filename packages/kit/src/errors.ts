// Named errors with stable snake_case codes, mapped in one table to gRPC and HTTP status.
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

export const ERROR_TABLE = {
  invalid_argument: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  invalid_json: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  unauthenticated: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401 },
  permission_denied: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403 },
  policy_denied: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403 },
  host_not_allowed: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403 },
  private_address: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403 },
  not_found: { grpc: GrpcStatus.NOT_FOUND, http: 404 },
  model_not_found: { grpc: GrpcStatus.NOT_FOUND, http: 404 },
  // OpenAI API request checks (gateway chat.ts): a field's value is wrong; images for a model without vision.
  invalid_value: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  image_too_large: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  model_not_vision_capable: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400 },
  method_not_allowed: { grpc: GrpcStatus.UNIMPLEMENTED, http: 405 },
  conflict: { grpc: GrpcStatus.ALREADY_EXISTS, http: 409 },
  payload_too_large: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 413 },
  unsupported_media_type: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 415 },
  rate_limited: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429 },
  internal: { grpc: GrpcStatus.INTERNAL, http: 500 },
  upstream_error: { grpc: GrpcStatus.UNAVAILABLE, http: 502 },
  llm_error: { grpc: GrpcStatus.UNAVAILABLE, http: 502 },
  unavailable: { grpc: GrpcStatus.UNAVAILABLE, http: 503 },
  vault_sealed: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 503 },
  wrong_passphrase: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401 },
  secret_corrupt: { grpc: GrpcStatus.DATA_LOSS, http: 500 },
  shutting_down: { grpc: GrpcStatus.UNAVAILABLE, http: 503 },
  timeout: { grpc: GrpcStatus.DEADLINE_EXCEEDED, http: 504 },
  upstream_timeout: { grpc: GrpcStatus.DEADLINE_EXCEEDED, http: 504 },
} as const satisfies Record<string, { grpc: GrpcStatus; http: number }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export function isErrorCode(v: string): v is ErrorCode {
  return Object.hasOwn(ERROR_TABLE, v);
}

/** Base class: every error a Talon service returns to a caller is one of these. */
export class TalonError extends Error {
  readonly code: ErrorCode;
  /** The request field at fault, as the public API names it (OpenAI's `param`, e.g. `tools[0].function.name`). */
  readonly param: string | undefined;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; param?: string }) {
    super(message, options);
    this.name = 'TalonError';
    this.code = code;
    this.param = options?.param;
  }
  get httpStatus(): number {
    return ERROR_TABLE[this.code].http;
  }
  get grpcStatus(): GrpcStatus {
    return ERROR_TABLE[this.code].grpc;
  }
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export class InvalidArgument extends TalonError {
  constructor(message: string) {
    super('invalid_argument', message);
    this.name = 'InvalidArgument';
  }
}
export class Unauthenticated extends TalonError {
  constructor(message = 'a valid credential is required') {
    super('unauthenticated', message);
    this.name = 'Unauthenticated';
  }
}
export class PermissionDenied extends TalonError {
  constructor(message: string) {
    super('permission_denied', message);
    this.name = 'PermissionDenied';
  }
}
export class PolicyDenied extends TalonError {
  constructor(message: string) {
    super('policy_denied', message);
    this.name = 'PolicyDenied';
  }
}
export class PayloadTooLarge extends TalonError {
  constructor(limitBytes: number) {
    super('payload_too_large', `request body exceeds the limit of ${limitBytes} bytes`);
    this.name = 'PayloadTooLarge';
  }
}
export class Unavailable extends TalonError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, options);
    this.name = 'Unavailable';
  }
}

const CODE_KEY = 'talon-error-code';

/** Converts any error into a gRPC ServiceError carrying the stable code in trailing metadata. */
export function toGrpcError(err: unknown): Partial<ServiceError> {
  const te = err instanceof TalonError ? err : new TalonError('internal', 'internal error');
  const metadata = new Metadata();
  metadata.set(CODE_KEY, te.code);
  return { code: te.grpcStatus, details: te.message, metadata, name: te.name, message: te.message };
}

/** Recovers a TalonError from a gRPC client error (code from metadata, else from status). */
export function fromGrpcError(err: unknown): TalonError {
  const e = err as Partial<ServiceError>;
  const raw = e.metadata?.get(CODE_KEY)[0];
  const details = typeof e.details === 'string' && e.details !== '' ? e.details : 'call failed';
  if (typeof raw === 'string' && isErrorCode(raw)) return new TalonError(raw, details, { cause: err });
  switch (e.code) {
    case GrpcStatus.UNAVAILABLE:
      return new TalonError('unavailable', details, { cause: err });
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new TalonError('timeout', details, { cause: err });
    case GrpcStatus.PERMISSION_DENIED:
      return new TalonError('permission_denied', details, { cause: err });
    case GrpcStatus.UNAUTHENTICATED:
      return new TalonError('unauthenticated', details, { cause: err });
    case GrpcStatus.INVALID_ARGUMENT:
      return new TalonError('invalid_argument', details, { cause: err });
    case GrpcStatus.NOT_FOUND:
      return new TalonError('not_found', details, { cause: err });
    default:
      return new TalonError('internal', details, { cause: err });
  }
}

/** Errors OpenAI itself answers with a code: the same `type` and `param` (clients branch on them). */
const OPENAI_OWN_ERRORS: Readonly<Record<string, { type: string; param: string }>> = {
  model_not_found: { type: 'invalid_request_error', param: 'model' },
};

/** OpenAI's `param` for an error code: the request field at fault, when OpenAI names one. */
export function openAiErrorParam(code: string): string | null {
  return OPENAI_OWN_ERRORS[code]?.param ?? null;
}

/**
 * OpenAI's error `type` for an HTTP status: OpenAI clients branch on it (their SDKs pick the
 * exception class from the status and show `type`); Talon's own reason stays in `code`.
 */
export function openAiErrorType(httpStatus: number, code?: string): string {
  const own = code === undefined ? undefined : OPENAI_OWN_ERRORS[code];
  if (own) return own.type;
  if (httpStatus === 401) return 'authentication_error';
  if (httpStatus === 403) return 'permission_error';
  if (httpStatus === 404) return 'not_found_error';
  if (httpStatus === 429) return 'rate_limit_error';
  if (httpStatus >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** The JSON body every HTTP error uses (OpenAI's envelope, so OpenAI clients show the message). */
export function httpErrorBody(err: TalonError): { error: { code: string; message: string; type: string; param: string | null } } {
  return {
    error: {
      code: err.code,
      message: err.message,
      type: openAiErrorType(err.httpStatus, err.code),
      param: err.param ?? openAiErrorParam(err.code),
    },
  };
}

/**
 * Network failures of a connection: Node's errno codes, and undici's for a socket closed
 * under a request or a response body (a peer such as egress killed mid-answer).
 */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/** nats.js errors of a connection that is closed, reconnecting or got no answer in time. */
const NATS_GONE = new Set(['TimeoutError', 'NoResponders', 'ClosedConnectionError', 'ConnectionError', 'DrainingConnectionError']);
/** PostgreSQL: connection exceptions (class 08), shutting down or starting up (57P01–57P03). */
const DATABASE_GONE = /^(08...|57P0[123])$/;

/**
 * True when an error means a dependency (the database, a peer) is away for now, not that the
 * request is wrong: such a failure is answered `unavailable`, which callers retry, instead of
 * `internal`. A turn thus rides out a database restart rather than failing.
 */
export function isDependencyUnavailable(err: unknown, depth = 0): boolean {
  const e = err as { code?: unknown; message?: unknown; name?: unknown; status?: unknown; cause?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (CONNECTION_CODES.has(code) || DATABASE_GONE.test(code)) return true;
  // nats.js: the server is away or restarting (by class name: errors.ts stays free of the client).
  if (typeof e?.name === 'string' && NATS_GONE.has(e.name)) return true;
  // JetStream answering 503: its meta leader or stream is not available yet (a node restarting).
  if (e?.name === 'JetStreamApiError' && e.status === 503) return true;
  // node-postgres words a connection lost mid-query without a code; pg-pool a pool that could not connect in time.
  if (
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
      String(e?.message ?? ''),
    )
  )
    return true;
  // A wrapper (nats.js RequestError, an Error with `cause`) of an outage is an outage.
  return depth < 3 && e?.cause !== undefined && isDependencyUnavailable(e.cause, depth + 1);
}

/** A handler's failure as a TalonError: its own, `unavailable` for a dependency that is away, else `internal`. */
export function asTalonError(err: unknown): TalonError {
  if (err instanceof TalonError) return err;
  if (isDependencyUnavailable(err)) return new TalonError('unavailable', 'a dependency is unavailable; retry shortly', { cause: err });
  return new TalonError('internal', 'internal error', { cause: err });
}
