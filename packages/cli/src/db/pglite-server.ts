// The embedded database: PGlite (PostgreSQL compiled to WASM) with pgvector,
// served over the PostgreSQL wire protocol on loopback (./wire.ts) so services use
// the same `pg` driver they use against a real server. Run as its own OS process
// by `talon up`.
//   node pglite-server.ts --data DIR --port N [--host 127.0.0.1] [--ports-file FILE] [--shared-buffers 32MB] [--template-dir DIR]
//        [--profile-statements]
// --port 0 takes any free port; the port bound is printed ("pglite ready") and, with
// --ports-file, written to FILE as {"pglite": N} for the supervisor. With --template-dir a
// fresh DIR is restored from the pristine cluster kept there, or initdb's saved there
// (./pgdata-template.ts). With --profile-statements every SIGUSR2 prints one line with the
// time PGlite spent per statement since the last (./statement-profile.ts; bench:turn-profile).
import { parseArgs } from 'node:util';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PgliteWireServer } from './wire.ts';
import { openWithTemplate, templateFile } from './pgdata-template.ts';
import { StatementProfile } from './statement-profile.ts';

const { values } = parseArgs({
  options: {
    data: { type: 'string' },
    port: { type: 'string', default: '5433' },
    host: { type: 'string', default: '127.0.0.1' },
    'max-connections': { type: 'string', default: '64' },
    // PostgreSQL's 128MB default doubles what the OS page cache already holds of the data
    // files (PGlite reads them through Node's fs) and kept ≈150 MiB more resident at idle.
    'shared-buffers': { type: 'string', default: '32MB' },
    'ports-file': { type: 'string' },
    'template-dir': { type: 'string' },
    'profile-statements': { type: 'boolean', default: false },
  },
});

if (!values.data) {
  process.stderr.write('pglite-server: --data DIR is required (use memory:// for a throwaway database)\n');
  process.exit(64);
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`pglite-server: --port must be a TCP port, got ${values.port}\n`);
  process.exit(64);
}

const options = {
  extensions: { vector },
  startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${values['shared-buffers']}`],
};
const templateDir = values['template-dir'];
let db: PGlite;
if (values.data.startsWith('memory://')) db = await PGlite.create(values.data, options);
else {
  mkdirSync(values.data, { recursive: true, mode: 0o700 });
  const warn = (msg: string) => process.stderr.write(`${JSON.stringify({ msg: 'pglite template', warning: msg })}\n`);
  const opened = templateDir ? await openWithTemplate(values.data, templateFile(templateDir), options, warn) : undefined;
  db = opened?.db ?? (await PGlite.create(values.data, options));
  if (opened && opened.origin !== 'existing')
    process.stdout.write(`${JSON.stringify({ msg: 'pglite cluster created', from: opened.origin })}\n`);
}
// The log scrubber (and the logger it comes with) is loaded only for profiling.
const profile = values['profile-statements'] ? new StatementProfile({ redact: (await import('@talon/kit/log')).scrub }) : undefined;
if (profile) {
  process.on('SIGUSR2', () => {
    const { sinceMs, rows } = profile.take();
    process.stdout.write(`${JSON.stringify({ msg: 'pglite statements', since_ms: sinceMs, statements: rows })}\n`);
  });
}
const server = new PgliteWireServer({
  db,
  port,
  host: values.host,
  maxConnections: Number(values['max-connections']),
  onError: (err) => process.stderr.write(`${JSON.stringify({ msg: 'pglite wire error', err: err.message })}\n`),
  ...(profile ? { onUnit: (bytes: Uint8Array, ms: number) => profile.record(bytes, ms) } : {}),
});
let bound: number;
try {
  bound = await server.start();
} catch (err) {
  if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
  // EX_CONFIG: the supervisor names the setting (TALON_PGLITE_PORT) and does not retry.
  process.stderr.write(`pglite-server: ${values.host}:${port} is already in use (EADDRINUSE)\n`);
  process.exit(78);
}
const portsFile = values['ports-file'];
if (portsFile) {
  writeFileSync(`${portsFile}.tmp`, `${JSON.stringify({ pglite: bound })}\n`, { mode: 0o600 });
  renameSync(`${portsFile}.tmp`, portsFile);
}
process.stdout.write(`${JSON.stringify({ msg: 'pglite ready', host: values.host, port: bound, data: values.data })}\n`);

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  process.stdout.write(`${JSON.stringify({ msg: 'pglite stopping', signal })}\n`);
  try {
    await server.stop();
    // close() checkpoints so a restart keeps every committed row.
    await db.close();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
