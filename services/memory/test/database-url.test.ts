// Memory reaches the native server through its Unix socket when its URL says so (libpq's
// `postgres://user@/database?host=/var/run/postgresql`): the config takes the URL, the
// pool connects through the socket and the migrations run, as at boot, without the platform.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { parseDatabaseUrl } from '@talon/kit/database-url';
import { createPool, migrate, pgClientConfig, type Pool } from '@talon/kit/db';
import { createLogger } from '@talon/kit/log';
import { createNativeDatabase, type NativeTestDatabase } from '@talon/testkit';
import { loadMemoryConfig } from '../src/config.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';

const SOCKET_DIR = '/var/run/postgresql';
const skip = existsSync(`${SOCKET_DIR}/.s.PGSQL.5432`) ? false : `no PostgreSQL socket in ${SOCKET_DIR}`;

describe('memory over a Unix-socket database URL (native server)', { skip }, () => {
  let db: NativeTestDatabase;
  let pool: Pool | undefined;
  before(async () => {
    // The testkit keeps the socket form for the new database.
    db = await createNativeDatabase(`postgres://postgres@/postgres?host=${SOCKET_DIR}`);
    const c = new pg.Client(pgClientConfig(db.url));
    await c.connect();
    try {
      await c.query('create extension if not exists vector');
    } finally {
      await c.end();
    }
  });
  after(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('loads the config, connects through the socket and migrates', async () => {
    assert.match(db.url, new RegExp(`^postgres://postgres@/talon_t_[0-9a-f]+\\?host=${SOCKET_DIR}$`));
    const cfg = loadMemoryConfig({ MEMORY_DATABASE_URL: `${db.url}&sslmode=prefer` });
    pool = createPool(cfg.databaseUrl, { max: cfg.dbPoolMax, applicationName: 'talon-memory-socket-test' });
    const res = await migrate(pool, MEMORY_SCHEMA, memoryMigrations, createLogger({ service: 'memory', level: 'silent' }));
    assert.equal(res.current, memoryMigrations.length);
    const { rows } = await pool.query<{ addr: string | null; db: string }>('select inet_client_addr() as addr, current_database() as db');
    assert.deepEqual(rows[0], { addr: null, db: parseDatabaseUrl(db.url).database });
  });
});
