// A pristine database cluster kept by the installation, so that a new embedded database
// is restored (its files written by Node's fs, then opened like any existing cluster: ≈1 s)
// instead of initialised by initdb in WASM (≈5 s): most of a cold `talon up`. The template
// is what initdb made, dumped before anything else touched the cluster (no role, schema or
// row of Talon's: the bootstrap and migrations run on every database as before), and named
// after the PGlite and pgvector versions that made it, so an upgrade makes a new one. It
// sits in the installation's cache (as trusted as the code).
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { readTar } from './tar.ts';

/** The version in the package.json of the package whose entry point `entryUrl` is. */
function packageVersion(entryUrl: string): string {
  let dir = dirname(fileURLToPath(entryUrl));
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const v: unknown = JSON.parse(readFileSync(file, 'utf8')).version;
      if (typeof v === 'string' && /^[0-9A-Za-z.+-]+$/.test(v)) return v;
    }
  }
  throw new Error(`no package.json with a version above ${entryUrl}`);
}

/** The template's file in `dir` for the PGlite and pgvector this installation has. */
export function templateFile(dir: string): string {
  const pglite = packageVersion(import.meta.resolve('@electric-sql/pglite'));
  const pgvector = packageVersion(import.meta.resolve('@electric-sql/pglite-pgvector'));
  return join(dir, `pglite-${pglite}-pgvector-${pgvector}.tar`);
}

/** A data directory that holds no cluster yet (initdb would run on it). */
export function isFresh(data: string): boolean {
  return !existsSync(join(data, 'PG_VERSION'));
}

/**
 * Writes the template's files below `data` (directories 0700, files 0600). PGlite's own
 * restore (loadDataDir) unpacks through its WASM file system and took ≈1 s more CPU, on
 * the cold start's critical path. PG_VERSION, which marks a cluster as there (isFresh),
 * is written last: a start cut short here leaves a directory that is still fresh.
 */
function unpackTemplate(template: string, data: string): void {
  const entries = readTar(readFileSync(template));
  const marker = entries.find((e) => e.path === 'PG_VERSION');
  if (!marker) throw new Error('the template holds no PG_VERSION');
  for (const e of [...entries.filter((x) => x !== marker), marker]) {
    const target = join(data, e.path);
    if (e.type === 'dir') mkdirSync(target, { recursive: true, mode: 0o700 });
    else {
      mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
      writeFileSync(target, e.data, { mode: 0o600 });
    }
  }
}

export interface OpenedDatabase {
  db: PGlite;
  /** How the cluster came to be: it was there, restored from the template, or made by initdb (and saved as the template). */
  origin: 'existing' | 'template' | 'initdb';
}

/**
 * Opens the cluster in `data` (a directory). A fresh one is restored from `template`
 * when that file exists; otherwise initdb makes it and the result is saved as the
 * template (atomically: concurrent starts never read half a file). A template that
 * fails to restore is removed and initdb runs instead. `warn` hears what went wrong.
 */
export async function openWithTemplate(
  data: string,
  template: string,
  opts: PGliteOptions,
  warn: (msg: string) => void,
): Promise<OpenedDatabase> {
  if (!isFresh(data)) return { db: await PGlite.create(data, opts), origin: 'existing' };
  if (existsSync(template)) {
    try {
      unpackTemplate(template, data);
      return { db: await PGlite.create(data, opts), origin: 'template' };
    } catch (err) {
      warn(`the database template ${template} could not be restored (${(err as Error).message}); running initdb`);
      rmSync(template, { force: true });
      rmSync(data, { recursive: true, force: true });
      mkdirSync(data, { recursive: true, mode: 0o700 });
    }
  }
  const db = await PGlite.create(data, opts);
  try {
    const tar = Buffer.from(await (await db.dumpDataDir('none')).arrayBuffer());
    mkdirSync(dirname(template), { recursive: true, mode: 0o700 });
    const tmp = `${template}.${process.pid}.tmp`;
    writeFileSync(tmp, tar, { mode: 0o600 });
    renameSync(tmp, template);
  } catch (err) {
    // Only the next cold start is slower for it.
    warn(`the database template ${template} could not be saved (${(err as Error).message})`);
  }
  return { db, origin: 'initdb' };
}
