// Structured JSON logs (pino) with redaction on by default.
//
// Two layers: known sensitive keys are censored wherever they appear (pino redact
// paths), and every string that reaches a log line is scrubbed of credential
// shapes (bearer values, Talon API tokens, NATS seeds, PEM keys). Code should
// still never log headers or bodies; this is the safety net.
//
// Secret *names* are not secret: an operator needs them to tell which secret an
// operation touched, so `secret`/`secretName` fields are kept — but only when they
// are shaped like a secret name (contracts.ts); anything else there is censored,
// so a value passed by mistake never reaches the line.
import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';
import { trace } from '@opentelemetry/api';
import { isSecretName } from './contracts.ts';
import { REDACTED, scrub } from './scrub.ts';

export type { Logger } from 'pino';

const SENSITIVE_KEYS = [
  'authorization',
  'Authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'password',
  'passphrase',
  'token',
  'apiKey',
  'api_key',
  'secretValue',
  'secret_value',
  'clientSecret',
  'client_secret',
  'seed',
  'privateKey',
  'private_key',
  'x-api-key',
];

export const REDACT_PATHS: readonly string[] = [
  ...SENSITIVE_KEYS.map((k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`)),
  ...SENSITIVE_KEYS.map((k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? `*.${k}` : `*["${k}"]`)),
  ...SENSITIVE_KEYS.map((k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? `*.*.${k}` : `*.*["${k}"]`)),
];

export { REDACTED, scrub };

/** Fields that carry secret names: logged as they are when name-shaped, else censored. */
const SECRET_NAME_KEYS = new Set(['secret', 'secretName', 'secret_name', 'secrets']);

function secretNameField(value: unknown): unknown {
  if (typeof value === 'string') return isSecretName(value) ? value : REDACTED;
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' && isSecretName(v) ? v : typeof v === 'number' ? v : REDACTED));
  // A count (e.g. `secrets: 3`) or a boolean says nothing about a value.
  return typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null ? value : REDACTED;
}

function scrubDeep(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrub(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth + 1));
  if (value instanceof Error) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_NAME_KEYS.has(k) ? secretNameField(v) : scrubDeep(v, depth + 1);
  return out;
}

export interface LoggerConfig {
  service: string;
  level?: string;
  destination?: DestinationStream;
}

export function createLogger(cfg: LoggerConfig): Logger {
  const options: LoggerOptions = {
    level: cfg.level ?? 'info',
    base: { service: cfg.service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    serializers: {
      err: (err: unknown) => {
        // Callers sometimes pass a message instead of an Error; never let logging throw.
        if (!(err instanceof Error)) return { message: scrub(typeof err === 'string' ? err : String(err)) };
        const s = pino.stdSerializers.err(err);
        return { ...s, message: scrub(s.message ?? ''), stack: s.stack ? scrub(s.stack) : s.stack };
      },
    },
    formatters: {
      log(obj) {
        const span = trace.getActiveSpan();
        const scrubbed = scrubDeep(obj, 0) as Record<string, unknown>;
        if (span) {
          const ctx = span.spanContext();
          scrubbed.trace_id = ctx.traceId;
          scrubbed.span_id = ctx.spanId;
        }
        return scrubbed;
      },
    },
    hooks: {
      logMethod(args, method) {
        const cleaned = args.map((a: unknown) => (typeof a === 'string' ? scrub(a) : a));
        method.apply(this, cleaned as Parameters<typeof method>);
      },
    },
  };
  return cfg.destination ? pino(options, cfg.destination) : pino(options);
}
