// Database bootstrap run with the operator's (admin) connection: the pgvector
// extension, one login role per owning service and a schema owned by it, so the
// memory role cannot read the vault's tables and vice versa.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { formatDatabaseUrl, parseDatabaseUrl, redactDatabaseUrl } from '@talon/kit/database-url';
import { pgClientConfig } from '@talon/kit/db';
import { writePrivate } from './home.ts';

export const DB_OWNERS = ['memory', 'vault'] as const;
export type DbOwner = (typeof DB_OWNERS)[number];

export function roleName(prefix: string, owner: DbOwner): string {
  return `${prefix}_${owner}`;
}

function quoteIdent(s: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(s)) throw new Error(`unsafe SQL identifier ${JSON.stringify(s)}`);
  return `"${s}"`;
}

function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export interface BootstrapOptions {
  adminUrl: string;
  embedded: boolean;
  /** Role names are `<prefix>_memory`, `<prefix>_vault`; tests use unique prefixes. */
  rolePrefix: string;
  /** Where generated role passwords are kept (0600). */
  secretsDir: string;
}

export async function bootstrapDatabase(opts: BootstrapOptions): Promise<Record<DbOwner, string>> {
  const client = new pg.Client({ connectionTimeoutMillis: 5000, ...pgClientConfig(opts.adminUrl) });
  await client.connect();
  try {
    try {
      await client.query('create extension if not exists vector');
    } catch (err) {
      throw new Error(
        `the pgvector extension is not available on ${redactDatabaseUrl(opts.adminUrl)}: ${(err as Error).message}. ` +
          'Install pgvector for this PostgreSQL server (see README: "Using your own PostgreSQL").',
        { cause: err },
      );
    }
    const urls = {} as Record<DbOwner, string>;
    for (const owner of DB_OWNERS) {
      const role = roleName(opts.rolePrefix, owner);
      const r = quoteIdent(role);
      const exists = await client.query('select 1 from pg_roles where rolname = $1', [role]);
      if (opts.embedded) {
        // The embedded server runs every session as its superuser; roles still own
        // the schemas so grants match the server layout.
        if (exists.rowCount === 0) await client.query(`create role ${r} nologin`);
        await client.query(`create schema if not exists ${owner} authorization ${r}`);
        urls[owner] = opts.adminUrl;
        continue;
      }
      const pwFile = join(opts.secretsDir, `${role}.password`);
      let password: string;
      if (existsSync(pwFile)) password = readFileSync(pwFile, 'utf8').trim();
      else {
        password = randomBytes(24).toString('base64url');
        writePrivate(pwFile, `${password}\n`);
      }
      if (exists.rowCount === 0) await client.query(`create role ${r} login password ${quoteLiteral(password)}`);
      else await client.query(`alter role ${r} with login password ${quoteLiteral(password)}`);
      await client.query(`create schema if not exists ${owner} authorization ${r}`);
      await client.query(`alter schema ${owner} owner to ${r}`);
      await client.query(`revoke all on schema ${owner} from public`);
      urls[owner] = formatDatabaseUrl({ ...parseDatabaseUrl(opts.adminUrl), user: role, password });
    }
    return urls;
  } finally {
    await client.end();
  }
}
