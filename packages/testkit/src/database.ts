// A fresh database per suite: embedded (a PGlite process per suite, started by the
// platform) or a new database on the native PostgreSQL server.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

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
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    rolePrefix,
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
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
