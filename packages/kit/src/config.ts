// Typed, validated configuration from environment variables.
//
// Each service declares a spec of fields; `loadConfig` parses every field once,
// collects every problem (not just the first) and returns a frozen object.
// A bad or missing value stops boot with a message naming the key and the fix.
// Secret fields may instead be read from a file named by KEY_FILE.
import { readFileSync } from 'node:fs';
import { DATABASE_URL_FORMS, databaseUrlProblem } from './database-url.ts';

export interface Field<T> {
  readonly key: string;
  readonly doc: string;
  /** Default rendered for docs and `.env.example`; undefined means required or optional-without-default. */
  readonly defaultText: string | undefined;
  /** True when the value must never be printed (passphrases, credentials). */
  readonly secret: boolean;
  parse(raw: string | undefined): T;
}

export class ConfigFieldError extends Error {
  readonly key: string;
  readonly fix: string;
  constructor(key: string, problem: string, fix: string) {
    super(`${key}: ${problem}. ${fix}`);
    this.name = 'ConfigFieldError';
    this.key = key;
    this.fix = fix;
  }
}

export class ConfigError extends Error {
  readonly code = 'config_invalid';
  readonly problems: readonly ConfigFieldError[];
  constructor(service: string, problems: readonly ConfigFieldError[]) {
    const lines = problems.map((p) => `  - ${p.message}`).join('\n');
    super(
      `${service}: invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines}\n` +
        `Every variable is documented in .env.example.`,
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

interface Common<T> {
  doc: string;
  default?: T;
  secret?: boolean;
}

function shown(secret: boolean, raw: string): string {
  return secret ? '<hidden>' : JSON.stringify(raw.length > 80 ? `${raw.slice(0, 77)}...` : raw);
}

/** Thrown by a field's conversion to say why a value is refused (never quoting a secret value). */
class ValueProblem extends Error {}

function make<T>(
  key: string,
  opts: Common<T> & { optional?: boolean },
  expect: string,
  convert: (raw: string) => T | undefined,
  render: (v: T) => string = String,
  /** Appended to the fix: the forms to copy. */
  hint?: string,
): Field<T> {
  const secret = opts.secret ?? false;
  const fixTail = hint ? `: ${hint}` : '';
  return {
    key,
    doc: opts.doc,
    secret,
    defaultText: opts.default === undefined ? undefined : render(opts.default),
    parse(raw) {
      const value = raw === undefined || raw.trim() === '' ? undefined : raw.trim();
      if (value === undefined) {
        if (opts.default !== undefined) return opts.default;
        if (opts.optional) return undefined as T;
        throw new ConfigFieldError(key, `is required but not set`, `Set ${key} to ${expect}${fixTail}`);
      }
      let out: T | undefined;
      let why = '';
      try {
        out = convert(value);
      } catch (err) {
        if (!(err instanceof ValueProblem)) throw err;
        why = `: it ${err.message}`;
      }
      if (out === undefined) {
        throw new ConfigFieldError(
          key,
          `expected ${expect}, got ${shown(secret, value)}${why}`,
          `Set ${key} to ${expect}${opts.default !== undefined ? ` or unset it for the default (${render(opts.default)})` : ''}${fixTail}`,
        );
      }
      return out;
    },
  };
}

export function str(key: string, opts: Common<string> & { pattern?: RegExp; expect?: string }): Field<string> {
  const expect = opts.expect ?? (opts.pattern ? `a value matching ${opts.pattern.source}` : 'a non-empty string');
  return make(key, opts, expect, (v) => (opts.pattern && !opts.pattern.test(v) ? undefined : v));
}

export function optionalStr(key: string, opts: { doc: string; secret?: boolean; pattern?: RegExp }): Field<string | undefined> {
  const expect = opts.pattern ? `a value matching ${opts.pattern.source}` : 'a string';
  return make<string | undefined>(key, { ...opts, optional: true }, expect, (v) => (opts.pattern && !opts.pattern.test(v) ? undefined : v));
}

export function int(key: string, opts: Common<number> & { min?: number; max?: number }): Field<number> {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  const expect =
    opts.min !== undefined && opts.max !== undefined
      ? `an integer from ${min} to ${max}`
      : opts.min !== undefined
        ? `an integer of at least ${min}`
        : 'an integer';
  return make(key, opts, expect, (v) => {
    if (!/^-?\d+$/.test(v)) return undefined;
    const n = Number(v);
    return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
  });
}

/** A decimal number in [min, max]. */
export function decimal(key: string, opts: Common<number> & { min: number; max: number }): Field<number> {
  return make(key, opts, `a number from ${opts.min} to ${opts.max}`, (v) => {
    const n = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : Number.NaN;
    return n >= opts.min && n <= opts.max ? n : undefined;
  });
}

export function port(key: string, opts: Common<number>): Field<number> {
  return int(key, { ...opts, min: 0, max: 65535 });
}

export function bool(key: string, opts: Common<boolean>): Field<boolean> {
  return make(key, opts, 'true or false', (v) => {
    const s = v.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off'].includes(s)) return false;
    return undefined;
  });
}

export function url(
  key: string,
  opts: Common<string> & { protocols?: readonly string[]; optional?: boolean; many?: boolean },
): Field<string> {
  const protocols = opts.protocols ?? ['http:', 'https:'];
  const one = `an absolute URL (${protocols.map((p) => p.replace(':', '://')).join(' or ')}...)`;
  const valid = (v: string) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  };
  // `many`: replicas of a peer, comma-separated; the value stays the string the client splits.
  if (opts.many)
    return make(key, opts, `${one}, or several comma-separated`, (v) => (v.split(',').every((u) => valid(u.trim())) ? v : undefined));
  return make(key, opts, one, (v) => (valid(v) ? v : undefined));
}

/**
 * A PostgreSQL URL in any form libpq accepts (database-url.ts owns the rule: Unix sockets
 * through host=, sslmode=, percent-encoded passwords). The value stays the string; secret
 * unless told otherwise, since it usually carries a password.
 */
export function databaseUrl(key: string, opts: Common<string> & { optional?: boolean }): Field<string> {
  return make(
    key,
    { ...opts, secret: opts.secret ?? true },
    'a postgres:// URL',
    (v) => {
      const problem = databaseUrlProblem(v);
      if (problem !== undefined) throw new ValueProblem(problem);
      return v;
    },
    String,
    DATABASE_URL_FORMS,
  );
}

export function oneOf<const T extends string>(key: string, values: readonly T[], opts: Common<T>): Field<T> {
  return make(key, opts, `one of ${values.join(', ')}`, (v) => (values.includes(v as T) ? (v as T) : undefined));
}

/** Comma-separated list; each item validated by `item` (return undefined to reject). */
export function list(
  key: string,
  opts: Common<readonly string[]> & { item?: (v: string) => boolean; expect?: string },
): Field<readonly string[]> {
  const expect = opts.expect ?? 'a comma-separated list';
  return make(
    key,
    opts,
    expect,
    (v) => {
      const items = v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      if (opts.item && !items.every(opts.item)) return undefined;
      return Object.freeze(items);
    },
    (v) => v.join(','),
  );
}

/** `host:port` item check shared by several lists. */
export function isHostPort(v: string): boolean {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v);
  return m !== null && Number(m[2]) <= 65535;
}

export type Spec = Record<string, Field<unknown>>;
export type ConfigOf<S extends Spec> = { readonly [K in keyof S]: S[K] extends Field<infer T> ? T : never };

/**
 * Variables renamed by the naming rule (docs/architecture.md, "Names"), old → new.
 * An old name still set would otherwise be ignored without a word (an origin
 * allow-list silently dropped), so a service that reads the new name refuses it.
 */
export const RENAMED_VARIABLES: Readonly<Record<string, string>> = Object.freeze({
  TALON_GATEWAY_HOST: 'GATEWAY_HOST',
  TALON_GATEWAY_ALLOWED_ORIGINS: 'GATEWAY_ALLOWED_ORIGINS',
  TALON_GATEWAY_TRUSTED_PROXIES: 'GATEWAY_TRUSTED_PROXIES',
  TALON_EMBEDDINGS_API_KEY_SECRET: 'ORCHESTRATOR_EMBEDDINGS_API_KEY_SECRET',
  TALON_EMBEDDINGS_TIMEOUT_MS: 'ORCHESTRATOR_EMBEDDINGS_TIMEOUT_MS',
  TALON_EMBEDDINGS_BATCH: 'ORCHESTRATOR_EMBEDDINGS_BATCH',
});

/** One problem per renamed variable still set under its old name and read by this spec under the new one. */
function renamedProblems(spec: Spec, env: Record<string, string | undefined>): ConfigFieldError[] {
  const keys = new Set(Object.values(spec).map((f) => f.key));
  return Object.entries(RENAMED_VARIABLES)
    .filter(([old, now]) => keys.has(now) && env[old] !== undefined)
    .map(([old, now]) => new ConfigFieldError(old, `was renamed ${now}`, `Set ${now} instead and remove ${old}`));
}

export function loadConfig<S extends Spec>(service: string, spec: S, env: Record<string, string | undefined> = process.env): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  const problems: ConfigFieldError[] = renamedProblems(spec, env);
  for (const [name, field] of Object.entries(spec)) {
    try {
      let raw = env[field.key];
      // Secrets may come from a file (container secrets): KEY_FILE names it.
      const file = env[`${field.key}_FILE`];
      if (field.secret && (raw === undefined || raw === '') && file) {
        try {
          raw = readFileSync(file, 'utf8').trim();
        } catch {
          throw new ConfigFieldError(
            `${field.key}_FILE`,
            `cannot read ${file}`,
            `Point ${field.key}_FILE at a readable file or set ${field.key}`,
          );
        }
      }
      out[name] = field.parse(raw);
    } catch (err) {
      if (err instanceof ConfigFieldError) problems.push(err);
      else throw err;
    }
  }
  if (problems.length > 0) throw new ConfigError(service, problems);
  return Object.freeze(out) as ConfigOf<S>;
}
