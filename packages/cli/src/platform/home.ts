// Layout of TALON_HOME and the one-time material in it (certificates, nkeys).
// Private files are written 0600 in 0700 directories; existing material is reused
// so a restart keeps identities and data.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newNkeyUser, publicKeyOfSeed } from '@talon/kit/nats';
import { NATS_USERS, type NatsUser } from '@talon/kit/subjects';
import { SERVICES } from '@talon/kit/service';
import { createCa, issueCert, type KeyAndCert } from '@talon/kit/pki';

/** Every workload identity that gets a certificate: the six services plus the admin (CLI). */
export const IDENTITIES = [...SERVICES, 'admin'] as const;

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

/** Creates the CA and one certificate per identity unless they already exist. */
export async function ensurePki(
  l: HomeLayout,
  onCreate?: (what: string) => void,
  dnsNames?: (identity: string) => string[],
): Promise<void> {
  const caCert = join(l.pki, 'ca.crt');
  const caKey = join(l.pki, 'ca.key');
  let ca: KeyAndCert;
  if (existsSync(caCert) && existsSync(caKey)) {
    ca = { certPem: readFileSync(caCert, 'utf8'), keyPem: readFileSync(caKey, 'utf8') };
  } else {
    ca = await createCa();
    writePrivate(caKey, ca.keyPem);
    writeFileSync(caCert, ca.certPem, { mode: 0o644 });
    onCreate?.('development CA');
  }
  for (const id of IDENTITIES) {
    const crt = join(l.pki, `${id}.crt`);
    const key = join(l.pki, `${id}.key`);
    if (existsSync(crt) && existsSync(key)) continue;
    const leaf = await issueCert(ca, { name: id, ...(dnsNames ? { dnsNames: dnsNames(id) } : {}) });
    writePrivate(key, leaf.keyPem);
    writeFileSync(crt, leaf.certPem, { mode: 0o644 });
    onCreate?.(`certificate spiffe://talon/${id}`);
  }
}

/** Creates an nkey user per NATS workload unless present; returns their public keys. */
export function ensureNkeys(l: HomeLayout): Record<NatsUser, string> {
  const out = {} as Record<NatsUser, string>;
  for (const u of NATS_USERS) {
    const file = join(l.nats, `${u}.nk`);
    if (!existsSync(file)) writePrivate(file, `${newNkeyUser().seed}\n`);
    out[u] = publicKeyOfSeed(readFileSync(file, 'utf8'));
  }
  return out;
}
