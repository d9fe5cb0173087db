// PostgreSQL URLs as operators write them for libpq (psql, pg_dump), the one owner of the
// rule for every *_DATABASE_URL: `postgres://` or `postgresql://`; a Unix socket named by
// `host=/var/run/postgresql` (with an empty host, which the WHATWG URL parser refuses) or
// by a percent-encoded host (`postgres://%2Fvar%2Frun%2Fpostgresql/db`); percent-encoded
// user, password and database; `sslmode=`. Parsed by hand the way libpq does it, so a
// password with a literal `#`, `?` or `:` is read as libpq reads it. No I/O here: db.ts
// turns the result into the pg driver's configuration.

/** libpq's sslmode values, weakest first. */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** The forms an operator can copy, named by every error about a database URL. */
export const DATABASE_URL_FORMS =
  'postgres://user:password@host:5432/database (percent-encode characters such as @ / : % # ? in the password), or postgres://user@/database?host=/var/run/postgresql for a Unix socket';

export interface DatabaseUrl {
  readonly scheme: 'postgres' | 'postgresql';
  /**
   * Host name or IP address (IPv6 without brackets), or, starting with `/`, the directory
   * of the server's Unix socket (libpq's rule). Undefined: the URL names none (the driver's
   * default applies: PGHOST, else localhost).
   */
  readonly host: string | undefined;
  /** Undefined: 5432 (or PGPORT); over a socket it names the socket file `.s.PGSQL.<port>`. */
  readonly port: number | undefined;
  readonly user: string | undefined;
  /** Decoded. Never put it in a log or an error: use redactDatabaseUrl. */
  readonly password: string | undefined;
  readonly database: string | undefined;
  readonly sslmode: SslMode | undefined;
  /** The other query parameters (application_name, connect_timeout, sslrootcert, ...), decoded, in URL order. */
  readonly params: Readonly<Record<string, string>>;
}

/** A database URL that cannot be used; the message names the problem and the accepted forms, never the password. */
export class DatabaseUrlError extends Error {
  /** The problem alone, e.g. `its port is not a number from 1 to 65535`. */
  readonly reason: string;
  constructor(reason: string) {
    super(`the database URL ${reason}; use ${DATABASE_URL_FORMS}`);
    this.name = 'DatabaseUrlError';
    this.reason = reason;
  }
}

/** True when `d` reaches the server through a Unix socket (its host is a directory). */
export function usesUnixSocket(d: Pick<DatabaseUrl, 'host'>): boolean {
  return d.host?.startsWith('/') ?? false;
}

function decode(part: string, what: string): string {
  let out: string;
  try {
    out = decodeURIComponent(part);
  } catch {
    throw new DatabaseUrlError(`has a broken percent-encoding in its ${what} (write a literal % as %25)`);
  }
  if (out.includes('\0')) throw new DatabaseUrlError(`has a NUL character (%00) in its ${what}`);
  return out;
}

function parsePort(raw: string): number {
  const n = /^\d{1,5}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= 1 && n <= 65535)) throw new DatabaseUrlError('has a port that is not a number from 1 to 65535');
  return n;
}

function parseHost(raw: string): string | undefined {
  if (raw.includes(',')) throw new DatabaseUrlError('names several hosts, which Talon does not support; name one');
  if (raw === '') return undefined;
  return raw;
}

export function isSslMode(v: string): v is SslMode {
  return SSL_MODES.some((m) => m === v);
}

/**
 * Reads a PostgreSQL URL as libpq does (query parameters `host`, `port`, `user`, `password`,
 * `dbname` and `sslmode` override the parts before them; `ssl=true` means `sslmode=require`).
 * Throws DatabaseUrlError for anything libpq would refuse or Talon cannot honour (several hosts,
 * verify-ca without a CA file).
 */
export function parseDatabaseUrl(url: string): DatabaseUrl {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(url.trim());
  if (!m) throw new DatabaseUrlError('is not a URL');
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'postgres' && scheme !== 'postgresql')
    throw new DatabaseUrlError(`starts with ${scheme}://, not postgres:// or postgresql://`);
  let rest = m[2]!;

  // libpq takes everything up to the first `@` before any `/` as user info.
  let user: string | undefined;
  let password: string | undefined;
  const at = rest.search(/[@/]/);
  if (at >= 0 && rest[at] === '@') {
    const info = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = info.indexOf(':');
    const rawUser = colon >= 0 ? info.slice(0, colon) : info;
    if (rawUser !== '') user = decode(rawUser, 'user name');
    if (colon >= 0) password = decode(info.slice(colon + 1), 'password');
  }

  // Host and port run to the path or the query.
  const end = rest.search(/[/?]/);
  const hostPort = end >= 0 ? rest.slice(0, end) : rest;
  rest = end >= 0 ? rest.slice(end) : '';
  let host: string | undefined;
  let port: number | undefined;
  if (hostPort.includes(',')) parseHost(hostPort);
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) throw new DatabaseUrlError('has an IPv6 address without its closing ]');
    host = parseHost(hostPort.slice(1, close));
    const after = hostPort.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw new DatabaseUrlError('has something other than :port after its IPv6 address');
    if (after.length > 1) port = parsePort(after.slice(1));
  } else {
    const colon = hostPort.indexOf(':');
    const rawHost = colon >= 0 ? hostPort.slice(0, colon) : hostPort;
    // A percent-encoded host may be a socket directory (`%2Fvar%2Frun%2Fpostgresql`).
    host = parseHost(decode(rawHost, 'host'));
    if (colon >= 0 && colon < hostPort.length - 1) port = parsePort(hostPort.slice(colon + 1));
  }

  let database: string | undefined;
  let query = '';
  if (rest.startsWith('/')) {
    const q = rest.indexOf('?');
    const rawDb = q >= 0 ? rest.slice(1, q) : rest.slice(1);
    if (rawDb !== '') database = decode(rawDb, 'database name');
    query = q >= 0 ? rest.slice(q + 1) : '';
  } else if (rest.startsWith('?')) query = rest.slice(1);

  let sslmode: SslMode | undefined;
  const params: Record<string, string> = {};
  for (const pair of query === '' ? [] : query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq < 0) throw new DatabaseUrlError('has a query parameter without =value');
    const key = decode(pair.slice(0, eq), 'query');
    const value = decode(pair.slice(eq + 1), key === 'password' ? 'password' : `${key} parameter`);
    switch (key) {
      case 'host':
        host = parseHost(value);
        break;
      case 'port':
        port = parsePort(value);
        break;
      case 'user':
        user = value;
        break;
      case 'password':
        password = value;
        break;
      case 'dbname':
        database = value;
        break;
      case 'ssl':
        // JDBC's spelling, which libpq accepts too.
        if (value !== 'true') throw new DatabaseUrlError('has ssl= other than true (use sslmode=)');
        sslmode = 'require';
        break;
      case 'sslmode':
        if (!isSslMode(value)) throw new DatabaseUrlError(`has sslmode=${value}; use one of ${SSL_MODES.join(', ')}`);
        sslmode = value;
        break;
      case 'connect_timeout':
      case 'keepalives_idle':
        if (!/^\d{1,9}$/.test(value)) throw new DatabaseUrlError(`has ${key}=${value}; use a whole number of seconds`);
        params[key] = value;
        break;
      case 'keepalives':
        if (value !== '0' && value !== '1') throw new DatabaseUrlError(`has keepalives=${value}; use 0 or 1`);
        params[key] = value;
        break;
      case 'sslnegotiation':
        if (value !== 'postgres' && value !== 'direct') throw new DatabaseUrlError(`has sslnegotiation=${value}; use postgres or direct`);
        params[key] = value;
        break;
      default:
        params[key] = value;
    }
  }
  // libpq would fall back to ~/.postgresql/root.crt; Talon wants the CA named where it is read.
  if (sslmode === 'verify-ca' && params.sslrootcert === undefined)
    throw new DatabaseUrlError('has sslmode=verify-ca without sslrootcert=<CA certificate file>');
  if (params.sslnegotiation === 'direct' && !(sslmode === 'require' || sslmode === 'verify-ca' || sslmode === 'verify-full'))
    throw new DatabaseUrlError('has sslnegotiation=direct without sslmode=require, verify-ca or verify-full');
  return { scheme, host, port, user, password, database, sslmode, params };
}

/** The reason `url` is not a usable PostgreSQL URL, or undefined when it is. */
export function databaseUrlProblem(url: string): string | undefined {
  try {
    parseDatabaseUrl(url);
    return undefined;
  } catch (err) {
    if (err instanceof DatabaseUrlError) return err.reason;
    throw err;
  }
}

// Query values keep `/` and `:` readable (`host=/var/run/postgresql`); libpq decodes either way.
function encodeQuery(v: string): string {
  return encodeURIComponent(v).replace(/%2F/gi, '/').replace(/%3A/gi, ':');
}

/**
 * Writes `d` back as a URL that libpq and parseDatabaseUrl read the same: a socket as
 * `postgres://user@/database?host=<dir>` (its port as `port=`), everything percent-encoded.
 */
export function formatDatabaseUrl(d: DatabaseUrl): string {
  const socket = usesUnixSocket(d);
  let auth = '';
  if (d.user !== undefined || d.password !== undefined) {
    auth = `${encodeURIComponent(d.user ?? '')}${d.password !== undefined ? `:${encodeURIComponent(d.password)}` : ''}@`;
  }
  let hostPart = '';
  if (!socket && d.host !== undefined) hostPart = d.host.includes(':') ? `[${d.host}]` : encodeURIComponent(d.host);
  if (!socket && d.port !== undefined) hostPart += `:${d.port}`;
  const query: string[] = [];
  if (socket && d.host !== undefined) query.push(`host=${encodeQuery(d.host)}`);
  if (socket && d.port !== undefined) query.push(`port=${d.port}`);
  if (d.sslmode !== undefined) query.push(`sslmode=${d.sslmode}`);
  for (const [k, v] of Object.entries(d.params)) query.push(`${encodeQuery(k)}=${encodeQuery(v)}`);
  const db = d.database !== undefined ? encodeURIComponent(d.database) : '';
  return `${d.scheme}://${auth}${hostPart}/${db}${query.length > 0 ? `?${query.join('&')}` : ''}`;
}

/** `url` with its password replaced by `****`, for logs and messages; an unusable URL is not shown at all. */
export function redactDatabaseUrl(url: string): string {
  let d: DatabaseUrl;
  try {
    d = parseDatabaseUrl(url);
  } catch {
    return '<invalid database URL>';
  }
  return formatDatabaseUrl(d.password === undefined ? d : { ...d, password: '****' });
}
