// Layout of TALON_HOME. Private files are written 0600 in 0700 directories. The
// one-time material in it (certificates, nkeys) is made by ./identity.ts; this module
// stays free of crypto and client libraries because the supervisor imports it.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function ensureDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
  return path;
}

export function writePrivate(path: string, data: string): void {
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export interface HomeLayout {
  root: string;
  pki: string;
  nats: string;
  natsStore: string;
  natsConfig: string;
  logs: string;
  pgdata: string;
  db: string;
  egress: string;
  /** Ports files: each process writes the ports it bound here (its supervisor reads them). */
  run: string;
  /** Node's compile cache for the platform's processes (a warm restart skips compiling and type stripping). */
  compileCache: string;
}

export function layout(root: string): HomeLayout {
  return {
    root,
    pki: join(root, 'pki'),
    nats: join(root, 'nats'),
    natsStore: join(root, 'nats', 'jetstream'),
    natsConfig: join(root, 'nats', 'nats-server.conf'),
    logs: join(root, 'logs'),
    pgdata: join(root, 'pgdata'),
    db: join(root, 'db'),
    egress: join(root, 'egress'),
    run: join(root, 'run'),
    compileCache: join(root, 'cache', 'node'),
  };
}

export function prepareHome(root: string): HomeLayout {
  const l = layout(root);
  for (const d of [l.root, l.pki, l.nats, l.natsStore, l.logs, l.db, l.egress, l.run, l.compileCache]) ensureDir(d);
  return l;
}
