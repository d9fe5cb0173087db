import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DATABASE_URL_FORMS, databaseUrlProblem, formatDatabaseUrl, parseDatabaseUrl, redactDatabaseUrl } from '@talon/kit/database-url';
import { bootstrapDatabase } from '../platform/database.ts';
import { writePrivate } from '../platform/home.ts';
import { CliError, homeDir } from '../context.ts';

export function registerDb(program: Command): void {
  const db = program.command('db').description('database administration for a PostgreSQL server');
  db.command('bootstrap')
    .description(
      'create the pgvector extension and one role + schema per owning service (memory, vault); write each service’s connection URL to a 0600 file',
    )
    .requiredOption(
      '--database-url <url>',
      'an owner/superuser URL of the database (or TALON_DATABASE_URL)',
      process.env.TALON_DATABASE_URL,
    )
    .option('--role-prefix <prefix>', 'role names are <prefix>_memory and <prefix>_vault', 'talon')
    .option('--host <host>', 'host name the services use to reach the database, if different from the URL’s')
    .action(async (o: { databaseUrl?: string; rolePrefix: string; host?: string }) => {
      if (!o.databaseUrl) throw new CliError('--database-url is required');
      const problem = databaseUrlProblem(o.databaseUrl);
      if (problem !== undefined) throw new CliError(`--database-url (or TALON_DATABASE_URL) ${problem}; use ${DATABASE_URL_FORMS}`);
      const dir = resolve(homeDir(), 'db');
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const urls = await bootstrapDatabase({ adminUrl: o.databaseUrl, embedded: false, rolePrefix: o.rolePrefix, secretsDir: dir });
      for (const [owner, url] of Object.entries(urls)) {
        // --host may also be a socket directory (starting with /).
        const u = formatDatabaseUrl(o.host ? { ...parseDatabaseUrl(url), host: o.host } : parseDatabaseUrl(url));
        writePrivate(join(dir, `${owner}.url`), `${u}\n`);
        console.log(
          `${owner.padEnd(7)} ${redactDatabaseUrl(u)}  -> ${join(dir, `${owner}.url`)} (use as ${owner.toUpperCase()}_DATABASE_URL_FILE)`,
        );
      }
    });
}
