// What the parts of the vault (keyring, secrets, release, scan index) are built
// on; vault.ts wires them together.
import type { Logger } from '@talon/kit/log';
import type { AuditEntry, AuditWriter } from './audit.ts';
import type { VaultStore } from './store.ts';

/** Single-operator deployments keep every secret under one owner; the column is there for tenants. */
export const OWNER = 'operator';

export interface VaultContext {
  store: VaultStore;
  audit: AuditWriter;
  log: Logger;
  now: () => number;
}

/** Records an outcome that licenses no release: a failed write is logged, not thrown. */
export async function auditQuietly(audit: AuditWriter, log: Logger, e: AuditEntry): Promise<void> {
  await audit.record(e).catch((err: unknown) => log.error({ err, action: e.action }, 'audit record could not be written'));
}
