// PostgreSQL pool and a forward-only migration runner.
// Each owning service keeps its tables in its own schema and migrates it at boot
// under an advisory lock, so replicas starting together apply each step once.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import {
  DatabaseUrlError,
  isSslMode,
  SSL_MODES,
  parseDatabaseUrl,
  usesUnixSocket,
  type DatabaseUrl,
  type SslMode,
} from './database-url.ts';
import type { Logger } from './log.ts';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The TLS options for sslmode as libpq means it. The driver's own reading of a URL differs
 * (pg-connection-string 2.x): prefer, require and verify-ca all mean verify-full there, and
 * it asks for TLS over a Unix socket, where libpq never does.
 */
function tlsFor(d: DatabaseUrl, sslmode: SslMode | undefined, readFile: (path: string) => string): false | ConnectionOptions {
  if (usesUnixSocket(d)) return false;
  // `allow` tries plain first in libpq, which is what a plain connection does; `prefer`
  // cannot fall back to plain in the driver, so it is TLS without a certificate check
  // (libpq's prefer never checks one either).
  if (sslmode === undefined || sslmode === 'disable' || sslmode === 'allow') return false;
  const p = d.params;
  const ca = p.sslrootcert !== undefined && p.sslrootcert !== 'system' ? readFile(p.sslrootcert) : undefined;
  const tls: ConnectionOptions = {
    ...(ca !== undefined ? { ca } : {}),
    ...(p.sslcert !== undefined ? { cert: readFile(p.sslcert) } : {}),
    ...(p.sslkey !== undefined ? { key: readFile(p.sslkey) } : {}),
    ...(p.sslpassword !== undefined ? { passphrase: p.sslpassword } : {}),
  };
  // require with a CA named behaves as verify-ca (libpq's compatibility rule).
  if (sslmode === 'prefer' || (sslmode === 'require' && ca === undefined)) return { ...tls, rejectUnauthorized: false };
  if (sslmode === 'require' || sslmode === 'verify-ca') return { ...tls, checkServerIdentity: () => undefined };
  return tls;
}

/**
 * The pg driver's configuration for a database URL in any form parseDatabaseUrl accepts,
 * spelled out so the connection does not depend on how the driver reads URLs. Honoured
 * parameters besides host/port/user/password/dbname/sslmode: sslrootcert (a file, or
 * `system`), sslcert, sslkey, sslpassword, sslnegotiation, application_name, options,
 * client_encoding, connect_timeout, keepalives, keepalives_idle; others are ignored.
 * Without sslmode, PGSSLMODE applies, as in libpq; without either the connection is plain.
 */
export function pgClientConfig(
  url: string,
  deps: { env?: Record<string, string | undefined>; readFile?: (path: string) => string } = {},
): pg.ClientConfig {
  const d = parseDatabaseUrl(url);
  const envMode = (deps.env ?? process.env).PGSSLMODE;
  if (d.sslmode === undefined && envMode !== undefined && envMode !== '' && !isSslMode(envMode))
    throw new DatabaseUrlError(`leaves sslmode to PGSSLMODE, which is not one of ${SSL_MODES.join(', ')}`);
  const sslmode = d.sslmode ?? (envMode !== undefined && isSslMode(envMode) ? envMode : undefined);
  const p = d.params;
  const seconds = (v: string) => Number(v) * 1000;
  return {
    ...(d.host !== undefined ? { host: d.host } : {}),
    ...(d.port !== undefined ? { port: d.port } : {}),
    ...(d.user !== undefined ? { user: d.user } : {}),
    ...(d.password !== undefined ? { password: d.password } : {}),
    ...(d.database !== undefined ? { database: d.database } : {}),
    ssl: tlsFor(d, sslmode, deps.readFile ?? ((path) => readFileSync(path, 'utf8'))),
    ...(p.sslnegotiation === 'direct' && !usesUnixSocket(d) ? { sslnegotiation: 'direct' as const } : {}),
    ...(p.application_name !== undefined ? { application_name: p.application_name } : {}),
    ...(p.options !== undefined ? { options: p.options } : {}),
    ...(p.client_encoding !== undefined ? { client_encoding: p.client_encoding } : {}),
    // libpq's 0 means wait forever, as the driver's 0 does.
    ...(p.connect_timeout !== undefined ? { connectionTimeoutMillis: seconds(p.connect_timeout) } : {}),
    ...(p.keepalives !== undefined ? { keepAlive: p.keepalives === '1' } : {}),
    ...(p.keepalives_idle !== undefined ? { keepAliveInitialDelayMillis: seconds(p.keepalives_idle) } : {}),
  };
}

export function createPool(
  url: string,
  opts: { max?: number; applicationName: string; onConnect?: (client: pg.PoolClient) => Promise<void> },
): pg.Pool {
  const pool = new pg.Pool({
    max: opts.max ?? 5,
    application_name: opts.applicationName,
    connectionTimeoutMillis: 5000,
    // The URL's own application_name and connect_timeout, when it has them, win.
    ...pgClientConfig(url),
    idleTimeoutMillis: 30_000,
    // Session settings applied before the pool hands a new connection out.
    ...(opts.onConnect ? { onConnect: opts.onConnect } : {}),
  } as pg.PoolConfig);
  // A dropped idle connection must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Tells `onChange` when the database goes away (false: a pooled connection was cut,
 * e.g. the server restarted) and when it answers again (true: checked every
 * `intervalMs` only while it is away, so a healthy idle service sends nothing).
 * Returns a function that stops watching.
 */
export function watchDatabase(pool: pg.Pool, onChange: (up: boolean) => void, opts: { intervalMs?: number } = {}): () => void {
  let down = false;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const probe = () => {
    timer = setTimeout(() => {
      pool.query('select 1').then(
        () => {
          if (stopped) return;
          down = false;
          onChange(true);
        },
        () => {
          if (!stopped) probe();
        },
      );
    }, opts.intervalMs ?? 1000);
    timer.unref();
  };
  const onError = () => {
    if (down || stopped) return;
    down = true;
    onChange(false);
    probe();
  };
  pool.on('error', onError);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    pool.off('error', onError);
  };
}

/** Waits until the database answers (it may start after us). */
export async function waitForDatabase(pool: pg.Pool, timeoutMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  let warned = false;
  while (Date.now() < deadline) {
    try {
      await pool.query('select 1');
      return;
    } catch (err) {
      lastErr = err;
      if (!warned) {
        log.warn({ err: String((err as Error).message) }, 'database not reachable yet; retrying');
        warned = true;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  throw new Error(`database unreachable after ${timeoutMs} ms: ${String((lastErr as Error)?.message ?? lastErr)}`);
}

function lockKey(schema: string): number {
  let h = 0x811c9dc5;
  for (const ch of `talon:migrate:${schema}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h | 0;
}

export interface MigrateResult {
  applied: number[];
  current: number;
}

/**
 * Applies pending migrations for `schema` in version order, each in its own
 * transaction. Refuses to run against a database newer than this code.
 */
export async function migrate(pool: pg.Pool, schema: string, migrations: readonly Migration[], log?: Logger): Promise<MigrateResult> {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  sorted.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`${schema}: migrations must be numbered 1..n without gaps (found ${m.version} at position ${i + 1})`);
  });
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query('select pg_advisory_lock($1)', [lockKey(schema)]);
    // The schema normally exists already (created for the service's role by the
    // bootstrap); creating it needs database-level CREATE, which the role lacks.
    const ns = await client.query('select 1 from pg_namespace where nspname = $1', [schema]);
    if (ns.rowCount === 0) await client.query(`create schema ${schema}`);
    await client.query(
      `create table if not exists ${schema}.schema_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())`,
    );
    const { rows } = await client.query<{ v: number | null }>(`select max(version) as v from ${schema}.schema_migrations`);
    const current = rows[0]?.v ?? 0;
    const latest = sorted.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new Error(
        `${schema}: database is at migration ${current} but this build knows only ${latest}; upgrade Talon instead of downgrading`,
      );
    }
    for (const m of sorted) {
      if (m.version <= current) continue;
      await client.query('begin');
      try {
        await client.query(m.sql);
        await client.query(`insert into ${schema}.schema_migrations (version, name) values ($1, $2)`, [m.version, m.name]);
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw new Error(`${schema}: migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.version);
      log?.info({ schema, version: m.version, migration: m.name }, 'migration applied');
    }
    return { applied, current: Math.max(current, ...applied) };
  } finally {
    await client.query('select pg_advisory_unlock($1)', [lockKey(schema)]).catch(() => undefined);
    client.release();
  }
}
