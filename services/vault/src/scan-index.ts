// The scan index egress's leak scanner uses: fingerprints of every live secret's
// encoded forms, never the values. Plaintexts are zeroed as soon as they are hashed.
import type { Logger } from '@talon/kit/log';
import type { AuditWriter } from './audit.ts';
import { auditQuietly, OWNER, type VaultContext } from './context.ts';
import { AuditUnavailable, SecretCorrupt, VaultSealed } from './errors.ts';
import { fingerprintSecret, type SecretFingerprintOut as SecretFingerprint } from './fingerprint.ts';
import type { Keyring } from './keyring.ts';
import type { Secrets } from './secrets.ts';
import type { VaultStore } from './store.ts';

export class ScanIndex {
  private readonly store: VaultStore;
  private readonly audit: AuditWriter;
  private readonly log: Logger;
  private readonly keyring: Keyring;
  private readonly secrets: Pick<Secrets, 'decrypt'>;
  /** The epoch of the last `vault_sealed` refusal audited: a refusal repeats nothing new until the state moves. */
  private sealedDeniedAt: number | undefined;

  constructor(ctx: VaultContext, keyring: Keyring, secrets: Pick<Secrets, 'decrypt'>) {
    this.store = ctx.store;
    this.audit = ctx.audit;
    this.log = ctx.log;
    this.keyring = keyring;
    this.secrets = secrets;
  }

  /** Fingerprints of every live secret's encoded forms; plaintexts are zeroed as soon as they are hashed. */
  async build(caller: string): Promise<{ epoch: number; secrets: SecretFingerprint[] }> {
    const base = { caller, action: 'scan_index', owner: OWNER, secretName: '*' };
    if (this.keyring.sealed) {
      // At most one row per state change (seal, unseal, secret change: each moves the epoch).
      const epoch = await this.store.epoch().catch(() => undefined);
      if (epoch === undefined || epoch !== this.sealedDeniedAt) {
        this.sealedDeniedAt = epoch;
        await auditQuietly(this.audit, this.log, { ...base, allowed: false, reason: 'vault_sealed' });
      }
      throw new VaultSealed();
    }
    // Epoch first: a change racing this call leaves egress with an older epoch, so it refetches.
    const epoch = await this.store.epoch();
    const rows = await this.store.liveSecrets(OWNER);
    const secrets: SecretFingerprint[] = [];
    let corrupt = 0;
    for (const r of rows) {
      let v: Buffer;
      try {
        v = await this.secrets.decrypt(r);
      } catch (err) {
        if (!(err instanceof SecretCorrupt)) throw err;
        corrupt += 1;
        this.log.error({ secret: r.name, version: r.version }, 'secret failed its integrity check; left out of the scan index');
        continue;
      }
      try {
        secrets.push(fingerprintSecret(r.name, v));
      } finally {
        v.fill(0);
      }
    }
    try {
      await this.audit.record({ ...base, allowed: true, reason: corrupt > 0 ? `allowed_${corrupt}_corrupt_skipped` : 'allowed' });
    } catch (err) {
      throw new AuditUnavailable(err);
    }
    return { epoch, secrets };
  }
}
