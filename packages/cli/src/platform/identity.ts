// The one-time identity material in TALON_HOME: the CA, one certificate per workload,
// one NATS nkey per user. Existing material is reused so a restart keeps identities.
// Run by the setup child under `talon up` (./setup-steps.ts) and by `talon init`.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newNkeyUser, publicKeyOfSeed } from '@talon/kit/nats';
import { NATS_USERS, type NatsUser } from '@talon/kit/subjects';
import { SERVICES } from '@talon/kit/service';
import { createCa, issueCert, type KeyAndCert } from '@talon/kit/pki';
import { writePrivate, type HomeLayout } from './home.ts';

/** Every workload identity that gets a certificate: the six services plus the admin (CLI). */
export const IDENTITIES = [...SERVICES, 'admin'] as const;

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
