// A fresh database per suite: embedded (a PGlite process per suite, started by the
// platform) or a new database on the native PostgreSQL server.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { PgliteWireServer } from '@talon/cli/pglite-wire';
import { formatDatabaseUrl, parseDatabaseUrl } from '@talon/kit/database-url';
import { pgClientConfig } from '@talon/kit/db';

export type TestDatabaseKind = 'embedded' | 'native';

export function testDatabaseKind(env: Record<string, string | undefined> = process.env): TestDatabaseKind {
  const v = (env.TALON_TEST_DATABASE ?? 'embedded').toLowerCase();
  if (v !== 'embedded' && v !== 'native') throw new Error(`TALON_TEST_DATABASE must be embedded or native, got ${v}`);
  return v;
}

export function nativeAdminUrl(env: Record<string, string | undefined> = process.env): string {
  return env.TALON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

export interface NativeTestDatabase {
  url: string;
  rolePrefix: string;
  drop(): Promise<void>;
}

export async function createNativeDatabase(adminUrl = nativeAdminUrl()): Promise<NativeTestDatabase> {
  const suffix = randomBytes(5).toString('hex');
  const name = `talon_t_${suffix}`;
  const rolePrefix = `t_${suffix}`;
  const admin = new pg.Client(pgClientConfig(adminUrl));
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  return {
    // Any form of the admin URL (a Unix socket too), with the new database.
    url: formatDatabaseUrl({ ...parseDatabaseUrl(adminUrl), database: name }),
    rolePrefix,
    async drop() {
      const c = new pg.Client(pgClientConfig(adminUrl));
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
        for (const r of ['memory', 'vault']) await c.query(`drop role if exists ${rolePrefix}_${r}`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * A database for one suite, of the kind TALON_TEST_DATABASE names: a fresh database on the
 * PostgreSQL server, or an in-memory PGlite behind the wire protocol. `stop` drops or closes it.
 */
export async function startSuiteDatabase(maxConnections = 16): Promise<{ url: string; stop: () => Promise<void> }> {
  if (testDatabaseKind() === 'native') {
    const native = await createNativeDatabase();
    return { url: native.url, stop: () => native.drop() };
  }
  const db = await PGlite.create('memory://');
  const server = new PgliteWireServer({ db, port: 0, host: '127.0.0.1', maxConnections });
  const port = await server.start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      await db.close();
    },
  };
}
