// A PostgreSQL server of the chaos run's own: initdb in a temporary folder, started
// with pg_ctl on loopback, so restarting it (a fault the run injects) touches nobody
// else's database. It uses the machine's PostgreSQL binaries, whose pgvector
// extension is installed for every cluster of that version.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freeLoopbackPort } from '@talon/kit/ports';

const run = promisify(execFile);

export interface PrivatePostgres {
  /** Superuser URL (trust authentication on loopback). */
  readonly url: string;
  /** `pg_ctl restart -m fast`: every connection is dropped and the server comes back on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The newest installed server's bin folder (Debian: /usr/lib/postgresql/<version>/bin). */
function serverBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))) : [];
  const newest = versions.sort((a, b) => Number(a) - Number(b)).at(-1);
  if (!newest) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql (install postgresql)');
  return join(root, newest, 'bin');
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = serverBin();
  const dir = mkdtempSync(join(tmpdir(), 'talon-pg-'));
  const data = join(dir, 'data');
  // PostgreSQL refuses to run as root: as root, the server runs as the postgres user.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) await run('chown', ['postgres', dir]);
  const pg = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args);
  await pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  // The port must be named before the server binds it; a lost race fails start and is retried.
  for (let attempt = 0; ; attempt++) {
    const port = await freeLoopbackPort();
    try {
      await pg('pg_ctl', [
        '-D',
        data,
        '-l',
        join(dir, 'server.log'),
        '-w',
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
        'start',
      ]);
      // A run that is interrupted must not leave a server behind (the platform's processes are killed on exit too).
      const onExit = () => {
        const args = [join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop'];
        try {
          if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'ignore' });
          else execFileSync(args[0]!, args.slice(1), { stdio: 'ignore' });
        } catch {
          /* already stopped */
        }
        rmSync(dir, { recursive: true, force: true });
      };
      process.once('exit', onExit);
      return {
        url: `postgres://postgres@127.0.0.1:${port}/postgres`,
        restart: async () => {
          // With its log file again: a server writing to pg_ctl's pipes would keep them (and this call) open.
          await pg('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-m', 'fast', '-w', 'restart']);
        },
        stop: async () => {
          process.off('exit', onExit);
          await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
}
