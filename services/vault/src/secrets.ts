// Secrets at rest: each version of a value sealed under a data key, with its name,
// version, key and policy bound in as associated data. The admin operations (set,
// rotate, delete, list) and the one decryption every release goes through.
// Plaintext values exist only inside one call, in Buffers zeroed here or handed to
// the caller to zero.
import { InvalidArgument, TalonError } from '@talon/kit/errors';
import { isSecretName, SECRET_NAME_RULE } from '@talon/kit/contracts';
import type { Logger } from '@talon/kit/log';
import type { PoolClient } from '@talon/kit/db';
import type { SecretInfo, SecretPolicy } from '@talon/proto';
import type { AuditWriter } from './audit.ts';
import { auditQuietly, OWNER, type VaultContext } from './context.ts';
import { AuthenticationFailed, open, seal, secretAad, sha256, type Sealed } from './crypto.ts';
import { SecretCorrupt, SecretNotFound } from './errors.ts';
import type { Keyring } from './keyring.ts';
import { canonicalPolicy, PolicyInvalid, toProtoPolicy, validatePolicy, type StoredPolicy } from './policy.ts';
import type { SecretRow, VaultStore } from './store.ts';

export const MAX_VALUE_BYTES = 64 * 1024;
// The placeholder grammar egress recognises ({{secret:NAME}}, packages/kit/src/contracts.ts);
// a name outside it could never be used.
export function validSecretName(name: string): boolean {
  return isSecretName(name);
}

function checkName(name: string): string {
  if (!isSecretName(name)) {
    throw new InvalidArgument(
      `secret name must be ${SECRET_NAME_RULE} (it is used as {{secret:NAME}}); got ${JSON.stringify(name.slice(0, 40))}`,
    );
  }
  return name;
}

function checkValue(value: Uint8Array): void {
  if (value.length === 0) throw new InvalidArgument('the secret value is empty');
  if (value.length > MAX_VALUE_BYTES)
    throw new InvalidArgument(`the secret value is ${value.length} bytes; the limit is ${MAX_VALUE_BYTES}`);
}

function policyError(err: unknown): never {
  if (err instanceof PolicyInvalid) throw new InvalidArgument(err.message);
  throw err;
}

function pgUniqueViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === '23505';
}

function info(name: string, version: number, policy: StoredPolicy, createdAtMs: number, keyId: number): SecretInfo {
  return { name, version, policy: toProtoPolicy(policy), createdAtMs, keyId };
}

export class Secrets {
  private readonly store: VaultStore;
  private readonly audit: AuditWriter;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly keyring: Keyring;

  constructor(ctx: VaultContext, keyring: Keyring) {
    this.store = ctx.store;
    this.audit = ctx.audit;
    this.log = ctx.log;
    this.now = ctx.now;
    this.keyring = keyring;
  }

  /**
   * Encrypts `value` for a new row inside `c`, counting the use against the active key.
   * A key created here (`fresh`) is adopted by the caller once `c` commits.
   */
  private async encryptInTx(
    c: PoolClient,
    row: { owner: string; name: string; version: number; policy: StoredPolicy },
    value: Uint8Array,
    fresh: (id: number, key: Buffer) => void,
  ): Promise<{ keyId: number } & Sealed> {
    const { keyId, key } = await this.keyring.keyForEncryption(c, fresh);
    this.keyring.requireKek();
    const sealed = seal(
      key,
      value,
      secretAad({ owner: row.owner, name: row.name, version: row.version, keyId, policyHash: sha256(canonicalPolicy(row.policy)) }),
    );
    return { keyId, ...sealed };
  }

  /** Decrypts a stored row; the caller zeroes the result. */
  async decrypt(r: SecretRow): Promise<Buffer> {
    const key = await this.keyring.keyFor(r.keyId);
    this.keyring.requireKek();
    try {
      return open(
        key,
        { nonce: r.nonce, ciphertext: r.ciphertext },
        secretAad({ owner: r.owner, name: r.name, version: r.version, keyId: r.keyId, policyHash: sha256(canonicalPolicy(r.policy)) }),
      );
    } catch (err) {
      if (err instanceof AuthenticationFailed) throw new SecretCorrupt(r.name, r.version);
      throw err;
    }
  }

  private async writeVersion(
    name: string,
    value: Uint8Array,
    policyFor: (live: SecretRow | undefined) => Promise<StoredPolicy>,
  ): Promise<SecretInfo> {
    let fresh: { id: number; key: Buffer } | undefined;
    try {
      const written = await this.store.tx(async (c) => {
        const { nextVersion, live } = await this.store.lockName(c, OWNER, name);
        const policy = await policyFor(live);
        const enc = await this.encryptInTx(
          c,
          { owner: OWNER, name, version: nextVersion, policy },
          value,
          (id, key) => (fresh = { id, key }),
        );
        const createdAtMs = await this.store.insertSecret(c, {
          owner: OWNER,
          name,
          version: nextVersion,
          keyId: enc.keyId,
          nonce: enc.nonce,
          ciphertext: enc.ciphertext,
          policy,
        });
        await this.store.bumpEpoch(c);
        return info(name, nextVersion, policy, createdAtMs, enc.keyId);
      });
      if (fresh) this.keyring.adoptKey(fresh.id, fresh.key);
      return written;
    } catch (err) {
      fresh?.key.fill(0);
      if (pgUniqueViolation(err))
        throw new TalonError('conflict', `secret ${name} was changed at the same time by another call; try again`);
      throw err;
    }
  }

  /** Stores `value` as the next version of `name` under `policy`. The caller zeroes `value`. */
  async set(name: string, value: Uint8Array, policyIn: SecretPolicy | undefined, caller: string): Promise<SecretInfo> {
    const base = { caller, action: 'set_secret', owner: OWNER, secretName: validSecretName(name) ? name : '<invalid name>' };
    try {
      checkName(name);
      checkValue(value);
      let policy: StoredPolicy;
      try {
        policy = validatePolicy(policyIn, this.now());
      } catch (err) {
        policyError(err);
      }
      this.keyring.requireKek();
      const written = await this.writeVersion(name, value, () => Promise.resolve(policy));
      await auditQuietly(this.audit, this.log, { ...base, allowed: true, reason: `version_${written.version}` });
      this.log.info({ secret: name, version: written.version, key_id: written.keyId }, 'secret stored');
      return written;
    } catch (err) {
      await auditQuietly(this.audit, this.log, { ...base, allowed: false, reason: (err as TalonError).code ?? 'internal' });
      throw err;
    }
  }

  /** New value, same policy. The live row must still authenticate, so a policy edited in the database is never re-sealed. */
  async rotate(name: string, value: Uint8Array, caller: string): Promise<SecretInfo> {
    const base = { caller, action: 'rotate_secret', owner: OWNER, secretName: validSecretName(name) ? name : '<invalid name>' };
    try {
      checkName(name);
      checkValue(value);
      this.keyring.requireKek();
      const written = await this.writeVersion(name, value, async (live) => {
        if (!live) throw new SecretNotFound(name);
        (await this.decrypt(live)).fill(0);
        return live.policy;
      });
      await auditQuietly(this.audit, this.log, { ...base, allowed: true, reason: `version_${written.version}` });
      this.log.info({ secret: name, version: written.version, key_id: written.keyId }, 'secret rotated');
      return written;
    } catch (err) {
      await auditQuietly(this.audit, this.log, { ...base, allowed: false, reason: (err as TalonError).code ?? 'internal' });
      throw err;
    }
  }

  async delete(name: string, caller: string): Promise<number> {
    checkName(name);
    const n = await this.store.tx(async (c) => {
      const d = await this.store.deleteSecret(c, OWNER, name);
      if (d > 0) await this.store.bumpEpoch(c);
      return d;
    });
    await auditQuietly(this.audit, this.log, {
      caller,
      action: 'delete_secret',
      owner: OWNER,
      secretName: name,
      allowed: n > 0,
      reason: n > 0 ? `versions_${n}` : 'not_found',
    });
    if (n === 0) throw new SecretNotFound(name);
    this.log.info({ secret: name, versions: n }, 'secret deleted');
    return n;
  }

  /** Names and metadata only: this never decrypts. */
  async list(): Promise<SecretInfo[]> {
    const rows = await this.store.liveSecrets(OWNER);
    return rows.map((r) => info(r.name, r.version, r.policy, r.createdAtMs, r.keyId));
  }
}
