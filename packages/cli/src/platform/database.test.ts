// `talon up --database-url` / `talon db bootstrap` with libpq's Unix-socket URL: the
// roles' URLs keep the socket form and connect as the roles (native server, when it has a socket).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { formatDatabaseUrl, parseDatabaseUrl } from '@talon/kit/database-url';
import { pgClientConfig } from '@talon/kit/db';
import { bootstrapDatabase } from './database.ts';

const SOCKET_DIR = '/var/run/postgresql';
const skip = existsSync(`${SOCKET_DIR}/.s.PGSQL.5432`) ? false : `no PostgreSQL socket in ${SOCKET_DIR}`;
const ADMIN = `postgres://postgres@/postgres?host=${SOCKET_DIR}`;

async function admin(sql: string): Promise<void> {
  const c = new pg.Client(pgClientConfig(ADMIN));
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

describe('database bootstrap over a Unix socket', { skip }, () => {
  const suffix = randomBytes(5).toString('hex');
  const name = `talon_t_${suffix}`;
  const prefix = `t_${suffix}`;
  let secrets: string;
  before(async () => {
    secrets = mkdtempSync(join(tmpdir(), 'talon-db-'));
    await admin(`create database ${name}`);
  });
  after(async () => {
    await admin(`drop database if exists ${name} with (force)`);
    for (const r of ['memory', 'vault']) await admin(`drop role if exists ${prefix}_${r}`);
    rmSync(secrets, { recursive: true, force: true });
  });

  it("writes the roles' URLs in the socket form and they connect as the roles", async () => {
    const adminUrl = formatDatabaseUrl({ ...parseDatabaseUrl(ADMIN), database: name });
    const urls = await bootstrapDatabase({ adminUrl, embedded: false, rolePrefix: prefix, secretsDir: secrets });
    for (const owner of ['memory', 'vault'] as const) {
      const d = parseDatabaseUrl(urls[owner]);
      assert.deepEqual([d.host, d.user, d.database], [SOCKET_DIR, `${prefix}_${owner}`, name]);
      assert.ok(d.password && d.password.length >= 32, 'a generated password');
      const c = new pg.Client(pgClientConfig(urls[owner]));
      await c.connect();
      try {
        const { rows } = await c.query<{ who: string; addr: string | null }>('select current_user as who, inet_client_addr() as addr');
        assert.deepEqual(rows[0], { who: `${prefix}_${owner}`, addr: null });
      } finally {
        await c.end();
      }
    }
  });
});
