// Databases for memory's integration tests: the embedded PGlite server (the same
// pglite-server.ts `talon up` runs, throwaway in-memory data) and a fresh database
// on the native PostgreSQL server. Both kinds run unless TALON_TEST_DATABASE
// selects one; the native one is skipped (with the reason) when no server answers.
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { pgClientConfig } from '@talon/kit/db';
import { createNativeDatabase, nativeAdminUrl } from '@talon/testkit';

export type DbKind = 'embedded' | 'native';

export interface TestDb {
  kind: DbKind;
  url: string;
  close(): Promise<void>;
}

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

export async function startEmbedded(): Promise<TestDb> {
  // Port 0: the server binds a free port and prints it in its "pglite ready" line.
  const child: ChildProcess = spawn(
    process.execPath,
    [join(ROOT, 'packages', 'cli', 'src', 'db', 'pglite-server.ts'), '--data', 'memory://', '--port', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, NODE_OPTIONS: '--max-old-space-size=2048' } },
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const port = await new Promise<number>((ok, fail) => {
    let out = '';
    // A ceiling for a loaded machine; on failure the server is stopped, or it would keep the test process alive.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`pglite did not start in 180 s: ${stderr}`));
    }, 180_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out
        .split('\n')
        .slice(0, -1)
        .find((l) => l.includes('"pglite ready"')); // complete lines only
      if (line) {
        clearTimeout(timer);
        ok((JSON.parse(line) as { port: number }).port);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`pglite exited with ${code}: ${stderr}`));
    });
  });
  return {
    kind: 'embedded',
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

export async function startNative(): Promise<TestDb> {
  const db = await createNativeDatabase();
  const c = new pg.Client(pgClientConfig(db.url));
  await c.connect();
  try {
    await c.query('create extension if not exists vector');
  } finally {
    await c.end();
  }
  return { kind: 'native', url: db.url, close: () => db.drop() };
}

/** Which kinds to run, and why native is skipped when it is. */
export async function databaseKinds(): Promise<Array<{ kind: DbKind; skip: string | false }>> {
  const want = process.env.TALON_TEST_DATABASE;
  const kinds: DbKind[] = want === 'embedded' || want === 'native' ? [want] : ['embedded', 'native'];
  const out: Array<{ kind: DbKind; skip: string | false }> = [];
  for (const kind of kinds) {
    if (kind === 'native') {
      const c = new pg.Client({ ...pgClientConfig(nativeAdminUrl()), connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        await c.end();
        out.push({ kind, skip: false });
      } catch (err) {
        if (want === 'native') throw err;
        out.push({ kind, skip: `no PostgreSQL server at TALON_TEST_DATABASE_URL (${(err as Error).message})` });
      }
    } else out.push({ kind, skip: false });
  }
  return out;
}

export function startDb(kind: DbKind): Promise<TestDb> {
  return kind === 'embedded' ? startEmbedded() : startNative();
}
