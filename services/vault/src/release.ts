// The two ways egress uses a secret: Resolve releases its value for one outbound
// request once the secret's policy allows it and the release is audited;
// VerifySignature checks a webhook signature with a verification key that never
// leaves the vault. Every outcome, allowed or not, is audited.
import { InvalidArgument, TalonError, Unavailable } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { ResolveRequest, SecretPolicy, VerifySignatureRequest } from '@talon/proto';
import type { AuditEntry, AuditOutcome, AuditWriter } from './audit.ts';
import { auditQuietly, OWNER, type VaultContext } from './context.ts';
import { AuditUnavailable, SecretCorrupt, SecretNotFound, SecretPolicyDenied, VaultSealed } from './errors.ts';
import type { Keyring } from './keyring.ts';
import { canonicalHost, decide, toProtoPolicy } from './policy.ts';
import { validSecretName, type Secrets } from './secrets.ts';
import { checkSignature, isSignatureScheme, SIGNATURE_SCHEME_NAMES } from './signature.ts';
import type { SecretRow, VaultStore } from './store.ts';

export interface Released {
  /** The plaintext; the caller zeroes it once the response is serialised. */
  value: Buffer;
  version: number;
  policy: SecretPolicy;
}

export class Release {
  private readonly store: VaultStore;
  private readonly audit: AuditWriter;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly keyring: Keyring;
  private readonly secrets: Pick<Secrets, 'decrypt'>;
  // Resolve's row cache: ciphertext and policy as read at `epoch` (never plaintext).
  private readonly rowCache = new Map<string, { row: SecretRow; epoch: number }>();

  constructor(ctx: VaultContext, keyring: Keyring, secrets: Pick<Secrets, 'decrypt'>) {
    this.store = ctx.store;
    this.audit = ctx.audit;
    this.log = ctx.log;
    this.now = ctx.now;
    this.keyring = keyring;
    this.secrets = secrets;
    keyring.onDrop(() => this.rowCache.clear());
  }

  /**
   * Releases one value for one outbound request. Every outcome is audited; an
   * allowed value is returned only after its audit row is committed.
   *
   * Fast path: the row (ciphertext and policy, never plaintext) cached with the
   * epoch it was read at; the decision is made on it and the audit row is written
   * only if the epoch is unchanged, in one round trip. Any change to any secret
   * moves the epoch, so a stale row is never the basis of a release.
   */
  async resolve(req: ResolveRequest, caller: string): Promise<Released> {
    const nameOk = validSecretName(req.name);
    const host = canonicalHost(req.host);
    const base = {
      caller,
      action: 'resolve',
      owner: OWNER,
      secretName: nameOk ? req.name : '<invalid name>',
      host: `${host ?? '<invalid host>'}:${req.port}`,
      principal: req.principal,
      requestId: req.requestId,
    };
    const deny = this.denier(base);
    if (!nameOk) return deny('invalid_argument', new InvalidArgument('name is not a valid secret name'));
    if (!host) return deny('invalid_argument', new InvalidArgument('host is not a valid host name or IP address'));
    if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535)
      return deny('invalid_argument', new InvalidArgument('port must be 1-65535'));
    if (req.principal === '') return deny('invalid_argument', new InvalidArgument('principal is required'));
    if (this.keyring.sealed) return deny('vault_sealed', new VaultSealed());
    const ctx = { principal: req.principal, host, port: req.port, placement: req.placement, field: req.field };
    const allowedEntry = { ...base, allowed: true, reason: 'allowed' };

    // A denial on the cached row is re-checked on the current row below, which is also what gets audited.
    const cached = this.rowCache.get(req.name);
    if (cached && decide(req.name, cached.row.policy, ctx, this.now()).allowed) {
      const value = await this.secrets.decrypt(cached.row).catch(() => undefined);
      if (value) {
        const out = await this.auditRelease(allowedEntry, value, cached.epoch);
        if (out.written) return { value, version: cached.row.version, policy: toProtoPolicy(cached.row.policy) };
        value.fill(0);
      }
      if (this.rowCache.get(req.name) === cached) this.rowCache.delete(req.name);
    }

    for (let attempt = 1; ; attempt++) {
      let read: Awaited<ReturnType<VaultStore['liveSecretAtEpoch']>>;
      try {
        read = await this.store.liveSecretAtEpoch(OWNER, req.name);
      } catch (err) {
        if (err instanceof SecretCorrupt) return deny('integrity_failure', err);
        return deny('unavailable', new Unavailable('the vault database is unavailable; try again', { cause: err }));
      }
      const { row, epoch } = read;
      if (!row) return deny('not_found', new SecretNotFound(req.name));
      const d = decide(req.name, row.policy, ctx, this.now());
      if (!d.allowed) return deny(d.reason, new SecretPolicyDenied(d.reason, d.message));
      if (this.keyring.sealed) return deny('vault_sealed', new VaultSealed());
      let value: Buffer;
      try {
        value = await this.secrets.decrypt(row);
      } catch (err) {
        if (err instanceof SecretCorrupt)
          this.log.error({ secret: row.name, version: row.version }, 'secret failed its integrity check; value withheld');
        const te = err instanceof TalonError ? err : new TalonError('internal', 'decryption failed');
        return deny(err instanceof SecretCorrupt ? 'integrity_failure' : te.code, te);
      }
      // The epoch moving between read and audit means something changed: decide again (bounded; then audit as read).
      const out = await this.auditRelease(allowedEntry, value, attempt < 3 ? epoch : undefined);
      if (out.written) {
        this.rowCache.set(req.name, { row, epoch });
        return { value, version: row.version, policy: toProtoPolicy(row.policy) };
      }
      value.fill(0);
    }
  }

  /** Writes the audit row that licenses a release; on failure the value is zeroed and nothing is released. */
  /** Refuses a request: audited (never with a value) before the error is thrown. */
  private denier(base: Omit<AuditEntry, 'allowed' | 'reason'>): (reason: string, err: TalonError) => Promise<never> {
    return async (reason, err) => {
      await auditQuietly(this.audit, this.log, { ...base, allowed: false, reason });
      throw err;
    };
  }

  private async auditRelease(entry: AuditEntry, value: Buffer, ifEpoch: number | undefined): Promise<AuditOutcome> {
    try {
      return await this.audit.record(entry, ifEpoch === undefined ? {} : { ifEpoch });
    } catch (err) {
      value.fill(0);
      this.log.error({ err, secret: entry.secretName }, 'audit write failed; value withheld');
      throw new AuditUnavailable(err);
    }
  }

  /**
   * Checks a webhook signature with a verification key (policy verify_only) for
   * an allowed principal. The key never leaves this method; the outcome is audited.
   */
  async verifySignature(req: VerifySignatureRequest, caller: string): Promise<boolean> {
    const nameOk = validSecretName(req.secretName);
    const base = {
      caller,
      action: 'verify_signature',
      owner: OWNER,
      secretName: nameOk ? req.secretName : '<invalid name>',
      host: '',
      principal: req.principal,
      requestId: req.requestId,
    };
    const deny = this.denier(base);
    if (!nameOk) return deny('invalid_argument', new InvalidArgument('secret_name is not a valid secret name'));
    if (!isSignatureScheme(req.scheme))
      return deny('invalid_argument', new InvalidArgument(`scheme must be one of ${SIGNATURE_SCHEME_NAMES.join(', ')}`));
    if (req.message.length > 4 * 1024 * 1024) return deny('invalid_argument', new InvalidArgument('message larger than 4 MiB'));
    if (this.keyring.sealed) return deny('vault_sealed', new VaultSealed());
    let row: SecretRow | undefined;
    try {
      row = await this.store.liveSecret(OWNER, req.secretName);
    } catch (err) {
      if (err instanceof SecretCorrupt) return deny('integrity_failure', err);
      return deny('unavailable', new Unavailable('the vault database is unavailable; try again', { cause: err }));
    }
    if (!row) return deny('not_found', new SecretNotFound(req.secretName));
    const p = row.policy;
    if (!p.verifyOnly)
      return deny(
        'not_verify_only',
        new SecretPolicyDenied('principal_not_allowed', `secret ${req.secretName} is not a verification key (store it with --verify)`),
      );
    if (!p.principals.includes(req.principal))
      return deny(
        'principal_not_allowed',
        new SecretPolicyDenied('principal_not_allowed', `principal ${req.principal} may not use secret ${req.secretName}`),
      );
    if (p.expiresAtMs !== 0 && this.now() >= p.expiresAtMs)
      return deny('secret_expired', new SecretPolicyDenied('secret_expired', `secret ${req.secretName} has expired`));
    const key = await this.secrets
      .decrypt(row)
      .catch(async (err: unknown) =>
        deny(
          err instanceof SecretCorrupt ? 'integrity_failure' : 'internal',
          err instanceof TalonError ? err : new TalonError('internal', 'decryption failed'),
        ),
      );
    let valid: boolean;
    try {
      valid = checkSignature(req.scheme, key, req.message, req.signature);
    } finally {
      key.fill(0);
    }
    await auditQuietly(this.audit, this.log, { ...base, allowed: valid, reason: valid ? 'valid_signature' : 'invalid_signature' });
    return valid;
  }
}
