import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { QueryResultRow } from 'pg';
import { databaseUrl, loadConfig, ConfigError } from './config.ts';
import {
  DatabaseUrlError,
  databaseUrlProblem,
  formatDatabaseUrl,
  parseDatabaseUrl,
  redactDatabaseUrl,
  SSL_MODES,
  usesUnixSocket,
} from './database-url.ts';
import { createPool, pgClientConfig } from './db.ts';

const SECRET = 'hunter2-Secret';

/** The TLS options of a config, or false; asserts there is no `true` (which would mean the driver's defaults). */
function tls(url: string, env: Record<string, string | undefined> = {}): false | ConnectionOptions {
  const ssl = pgClientConfig(url, { env, readFile: (p) => `PEM of ${p}` }).ssl;
  assert.notEqual(ssl, true);
  assert.notEqual(ssl, undefined);
  return ssl === true || ssl === undefined ? false : ssl;
}

describe('database URLs', () => {
  it("reads libpq's Unix-socket form and keeps the socket directory", () => {
    const d = parseDatabaseUrl('postgres://postgres@/talon?host=/var/run/postgresql');
    assert.equal(d.user, 'postgres');
    assert.equal(d.database, 'talon');
    assert.equal(d.host, '/var/run/postgresql');
    assert.equal(d.port, undefined);
    assert.ok(usesUnixSocket(d));
    assert.equal(
      formatDatabaseUrl({ ...d, user: 'talon_memory', password: 'pw' }),
      'postgres://talon_memory:pw@/talon?host=/var/run/postgresql',
    );
    assert.equal(formatDatabaseUrl(d), 'postgres://postgres@/talon?host=/var/run/postgresql');
    const noUser = parseDatabaseUrl('postgresql:///talon?host=/tmp');
    assert.deepEqual([noUser.scheme, noUser.user, noUser.host, noUser.database], ['postgresql', undefined, '/tmp', 'talon']);
    assert.equal(parseDatabaseUrl('postgres://@/db?host=/tmp&port=5433').port, 5433);
    // A percent-encoded host is a socket directory too.
    assert.equal(parseDatabaseUrl('postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/db').host, '/var/run/postgresql');
    // Its port survives formatting (as port=, which libpq reads).
    const withPort = formatDatabaseUrl(parseDatabaseUrl('postgres://u@%2Frun%2Fpg:5433/db'));
    assert.equal(withPort, 'postgres://u@/db?host=/run/pg&port=5433');
    assert.equal(parseDatabaseUrl(withPort).port, 5433);
  });

  it('reads ordinary URLs, IPv6 hosts and the query parameters libpq lets override the rest', () => {
    const d = parseDatabaseUrl('postgres://u:p@db.example:5433/t');
    assert.deepEqual([d.host, d.port, d.user, d.password, d.database, d.sslmode], ['db.example', 5433, 'u', 'p', 't', undefined]);
    assert.ok(!usesUnixSocket(d));
    assert.equal(formatDatabaseUrl(d), 'postgres://u:p@db.example:5433/t');
    const v6 = parseDatabaseUrl('postgres://u@[::1]:6000/t');
    assert.deepEqual([v6.host, v6.port], ['::1', 6000]);
    assert.equal(formatDatabaseUrl(v6), 'postgres://u@[::1]:6000/t');
    const q = parseDatabaseUrl('postgres://u@h/a?dbname=b&port=7000&user=v&password=w&application_name=x%20y&host=other');
    assert.deepEqual(
      [q.database, q.port, q.user, q.password, q.host, q.params],
      ['b', 7000, 'v', 'w', 'other', { application_name: 'x y' }],
    );
    assert.equal(parseDatabaseUrl('postgres://h').database, undefined);
  });

  it('decodes percent-encoded user, password and database, and reads unencoded # ? : in a password as libpq does', () => {
    const d = parseDatabaseUrl('postgres://u:p%40ss%2Fw@host/db');
    assert.equal(d.password, 'p@ss/w');
    assert.equal(parseDatabaseUrl('postgres://u%40corp:p%25x@host/my%2Fdb%40x').user, 'u@corp');
    assert.equal(parseDatabaseUrl('postgres://u%40corp:p%25x@host/my%2Fdb%40x').password, 'p%x');
    assert.equal(parseDatabaseUrl('postgres://u%40corp:p%25x@host/my%2Fdb%40x').database, 'my/db@x');
    assert.equal(parseDatabaseUrl('postgres://u:pa#s?s:x@host/db').password, 'pa#s?s:x');
    // Whatever the password holds, formatting and parsing give it back.
    const hard = 'p@ss/w:rd#?%&= ü';
    const url = formatDatabaseUrl({ ...d, password: hard });
    assert.equal(parseDatabaseUrl(url).password, hard);
    assert.equal(pgClientConfig(url).password, hard);
  });

  it('reads every sslmode, and ssl=true as require', () => {
    for (const mode of SSL_MODES) {
      const extra = mode === 'verify-ca' ? '&sslrootcert=/etc/ca.pem' : '';
      assert.equal(parseDatabaseUrl(`postgres://u@h/db?sslmode=${mode}${extra}`).sslmode, mode);
    }
    assert.equal(parseDatabaseUrl('postgres://u@h/db?ssl=true').sslmode, 'require');
    assert.equal(
      formatDatabaseUrl(parseDatabaseUrl('postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem')),
      'postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem',
    );
  });

  it('refuses what it cannot use with the reason and the forms to use, never the password', () => {
    const bad: Array<[string, RegExp]> = [
      [`mysql://root:${SECRET}@db/x`, /starts with mysql:\/\/, not postgres:\/\/ or postgresql:\/\//],
      [SECRET, /is not a URL/],
      [`postgres://u:${SECRET}@h:99999/db`, /port that is not a number from 1 to 65535/],
      [`postgres://u:${SECRET}@h:abc/db`, /port that is not a number/],
      [`postgres://u:${SECRET}%zz@h/db`, /broken percent-encoding in its password/],
      [`postgres://u:${SECRET}@h1:5432,h2:5433/db`, /several hosts/],
      [`postgres://u:${SECRET}@/db?host=/a,/b`, /several hosts/],
      [`postgres://u:${SECRET}@[::1/db`, /IPv6 address without its closing \]/],
      [`postgres://u:${SECRET}@h/db?sslmode=on`, /sslmode=on; use one of disable, allow, prefer, require, verify-ca, verify-full/],
      [`postgres://u:${SECRET}@h/db?sslmode=verify-ca`, /verify-ca without sslrootcert/],
      [`postgres://u:${SECRET}@h/db?ssl=1`, /ssl= other than true/],
      [`postgres://u:${SECRET}@h/db?connect_timeout=soon`, /connect_timeout=soon; use a whole number of seconds/],
      [`postgres://u:${SECRET}@h/db?sslnegotiation=direct`, /sslnegotiation=direct without sslmode=require/],
      [`postgres://u@h/db?password=${SECRET}%`, /broken percent-encoding in its password/],
      [`postgres://u:${SECRET}@h/db?flag`, /query parameter without =value/],
    ];
    for (const [url, reason] of bad) {
      assert.throws(
        () => parseDatabaseUrl(url),
        (err: unknown) => {
          assert.ok(err instanceof DatabaseUrlError, url.replace(SECRET, '***'));
          assert.match(err.reason, reason);
          assert.match(err.message, /postgres:\/\/user:password@host:5432\/database/);
          assert.match(err.message, /postgres:\/\/user@\/database\?host=\/var\/run\/postgresql for a Unix socket/);
          assert.ok(!err.message.includes(SECRET) && !err.message.includes('hunter2'), 'the password is not in the message');
          return true;
        },
      );
      assert.match(databaseUrlProblem(url) ?? '', reason);
    }
    assert.equal(databaseUrlProblem('postgres://u@/db?host=/run/pg'), undefined);
  });

  it('redacts the password for logs, in every form', () => {
    assert.equal(redactDatabaseUrl(`postgres://u:${SECRET}@/db?host=/run/pg`), 'postgres://u:****@/db?host=/run/pg');
    assert.equal(redactDatabaseUrl(`postgres://u:${SECRET}@h:5433/db?sslmode=require`), 'postgres://u:****@h:5433/db?sslmode=require');
    assert.equal(redactDatabaseUrl(`postgres://u@h/db?password=${SECRET}`), 'postgres://u:****@h/db');
    assert.equal(redactDatabaseUrl('postgres://u@h/db'), 'postgres://u@h/db');
    assert.equal(redactDatabaseUrl(`postgres://u:${SECRET}@h:x/db`), '<invalid database URL>');
  });

  it('config: a database URL setting takes every form and names the problem without the value', () => {
    const spec = { url: databaseUrl('MEMORY_DATABASE_URL', { doc: 'test' }) };
    assert.equal(spec.url.secret, true);
    for (const v of ['postgres://postgres@/postgres?host=/var/run/postgresql', 'postgresql://u:p%40ss%2Fw@host/db?sslmode=require'])
      assert.equal(loadConfig('memory', spec, { MEMORY_DATABASE_URL: v }).url, v);
    const refused = (v: string | undefined) => {
      try {
        loadConfig('memory', spec, { MEMORY_DATABASE_URL: v });
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.message;
      }
      assert.fail('accepted');
    };
    const msg = refused(`postgres://u:${SECRET}@h/db?sslmode=maybe`);
    assert.match(msg, /MEMORY_DATABASE_URL: expected a postgres:\/\/ URL, got <hidden>: it has sslmode=maybe; use one of/);
    assert.match(msg, /Set MEMORY_DATABASE_URL to a postgres:\/\/ URL: postgres:\/\/user:password@host:5432\/database/);
    assert.ok(!msg.includes(SECRET));
    assert.match(refused(`mysql://root:${SECRET}@db/x`), /expected a postgres:\/\/ URL, got <hidden>/);
    assert.match(refused(undefined), /MEMORY_DATABASE_URL: is required but not set\. Set MEMORY_DATABASE_URL to a postgres:\/\/ URL/);
  });

  it('pg configuration: sslmode as libpq means it, whatever the driver would make of the URL', () => {
    // Over a Unix socket libpq never uses TLS; the driver would ask for it.
    assert.equal(tls('postgres://u@/db?host=/run/pg&sslmode=require'), false);
    assert.equal(tls('postgres://u@/db?host=/run/pg', { PGSSLMODE: 'verify-full' }), false);
    assert.equal(tls('postgres://u@h/db'), false);
    assert.equal(tls('postgres://u@h/db?sslmode=disable'), false);
    assert.equal(tls('postgres://u@h/db?sslmode=allow'), false);
    // prefer and require: encrypted, certificate not checked (the driver would check it fully).
    assert.deepEqual(tls('postgres://u@h/db?sslmode=prefer'), { rejectUnauthorized: false });
    assert.deepEqual(tls('postgres://u@h/db?sslmode=require'), { rejectUnauthorized: false });
    assert.deepEqual(tls('postgres://u@h/db', { PGSSLMODE: 'require' }), { rejectUnauthorized: false });
    // require with a CA and verify-ca: the chain is checked, the host name is not.
    for (const url of [
      'postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem',
      'postgres://u@h/db?sslmode=verify-ca&sslrootcert=/ca.pem',
    ]) {
      const t = tls(url);
      assert.ok(t);
      assert.equal(t.ca, 'PEM of /ca.pem');
      assert.equal(t.rejectUnauthorized, undefined);
      assert.equal(typeof t.checkServerIdentity, 'function');
    }
    // verify-full: everything checked, against the named CA or the system's.
    assert.deepEqual(tls('postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem'), {
      ca: 'PEM of /ca.pem',
      cert: 'PEM of /c.pem',
      key: 'PEM of /k.pem',
    });
    assert.deepEqual(tls('postgres://u@h/db?sslmode=verify-full&sslrootcert=system'), {});
    assert.throws(() => tls('postgres://u@h/db', { PGSSLMODE: 'sometimes' }), /PGSSLMODE/);
  });

  it('pg configuration: connection parts and the parameters it honours', () => {
    const c = pgClientConfig(
      'postgres://u:p%2Fw@/db?host=/run/pg&port=5433&application_name=app&connect_timeout=3&options=-c%20x%3D1&target_session_attrs=any',
      { env: {} },
    );
    assert.deepEqual(
      { ...c },
      {
        host: '/run/pg',
        port: 5433,
        user: 'u',
        password: 'p/w',
        database: 'db',
        ssl: false,
        application_name: 'app',
        connectionTimeoutMillis: 3000,
        options: '-c x=1',
      },
    );
    // Nothing named: the driver's defaults (PGHOST, PGUSER...) decide, as libpq's environment would.
    assert.deepEqual({ ...pgClientConfig('postgres:///', { env: {} }) }, { ssl: false });
  });
});

// The machine's PostgreSQL socket, when there is one: the URL forms really connect through it.
const SOCKET_DIR = '/var/run/postgresql';
const noSocket = existsSync(`${SOCKET_DIR}/.s.PGSQL.5432`) ? false : `no PostgreSQL socket in ${SOCKET_DIR}`;

describe('database URLs against the native server', { skip: noSocket }, () => {
  async function ask<T extends QueryResultRow>(url: string, sql: string): Promise<T> {
    const pool = createPool(url, { max: 1, applicationName: 'talon-database-url-test' });
    try {
      return (await pool.query<T>(sql)).rows[0]!;
    } finally {
      await pool.end();
    }
  }

  it('connects through the Unix socket in each spelling, sslmode ignored there as libpq does', async () => {
    for (const url of [
      `postgres://postgres@/postgres?host=${SOCKET_DIR}`,
      `postgresql://postgres@/postgres?host=${SOCKET_DIR}&sslmode=require`,
      `postgres://postgres@${encodeURIComponent(SOCKET_DIR)}/postgres`,
      `postgres:///postgres?host=${SOCKET_DIR}&user=postgres&port=5432`,
    ]) {
      // A Unix-socket session has no client address.
      const row = await ask<{ addr: string | null; who: string }>(url, 'select inet_client_addr() as addr, current_user as who');
      assert.deepEqual(row, { addr: null, who: 'postgres' }, redactDatabaseUrl(url));
    }
  });

  it('over TCP, sslmode=require asks the server for TLS (and gets it only if the server has it on)', async () => {
    const { ssl } = await ask<{ ssl: string }>(`postgres://postgres@/postgres?host=${SOCKET_DIR}`, 'show ssl');
    const url = 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=require&connect_timeout=5';
    if (ssl === 'on') {
      const row = await ask<{ ssl: boolean }>(url, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
      assert.equal(row.ssl, true);
    } else {
      await assert.rejects(ask(url, 'select 1'), /does not support SSL/);
      const row = await ask<{ one: number }>('postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable', 'select 1 as one');
      assert.equal(row.one, 1);
    }
  });
});
