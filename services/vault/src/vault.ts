// The vault's state machine: sealed (no key in memory) or unsealed (the KEK and the
// unwrapped data keys in memory), and every operation that needs them. Plaintext
// values exist only inside one call, in Buffers this module zeroes or hands to the
// caller to zero.
import { InvalidArgument, isSecretName, SECRET_NAME_RULE, TalonError, Unavailable, type Logger } from '@talon/kit';
import type { ResolveRequest, SecretInfo, SecretPolicy, StatusResponse, VerifySignatureRequest } from '@talon/proto';
import { checkSignature, isSignatureScheme, SIGNATURE_SCHEMES } from './signature.ts';
import type { AuditEntry, AuditOutcome, AuditWriter } from './audit.ts';
import {
  AuthenticationFailed,
  deriveKek,
  describeKdf,
  makeCheck,
  newKey,
  newSalt,
  open,
  seal,
  secretAad,
  sha256,
  unwrapKey,
  verifyCheck,
  wrapKey,
  type KdfParams,
  type Sealed,
} from './crypto.ts';
import {
  AuditUnavailable,
  KeyringDamaged,
  SecretCorrupt,
  SecretNotFound,
  SecretPolicyDenied,
  VaultSealed,
  WrongPassphrase,
} from './errors.ts';
import { fingerprintSecret, type SecretFingerprintOut as SecretFingerprint } from './fingerprint.ts';
import { canonicalHost, canonicalPolicy, decide, PolicyInvalid, toProtoPolicy, validatePolicy, type StoredPolicy } from './policy.ts';
import type { SecretRow, VaultStore } from './store.ts';
import type { PoolClient } from '@talon/kit';

/** Single-operator deployments keep every secret under one owner; the column is there for tenants. */
export const OWNER = 'operator';
export const MIN_PASSPHRASE_CHARS = 12;
export const MAX_PASSPHRASE_BYTES = 1024;
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

function checkNewPassphrase(p: Buffer): void {
  if (p.length > MAX_PASSPHRASE_BYTES) throw new InvalidArgument(`the passphrase is longer than ${MAX_PASSPHRASE_BYTES} bytes`);
  if ([...p.toString('utf8')].length < MIN_PASSPHRASE_CHARS) {
    throw new InvalidArgument(`choose a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters (a few random words work well)`);
  }
}

function policyError(err: unknown): never {
  if (err instanceof PolicyInvalid) throw new InvalidArgument(err.message);
  throw err;
}

function pgUniqueViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === '23505';
}

export interface VaultOptions {
  store: VaultStore;
  audit: AuditWriter;
  log: Logger;
  /** Argon2id parameters for new keyrings and passphrase changes (unseal uses the stored ones). */
  kdf: KdfParams;
  /** Encryptions per data key before it is rotated automatically. */
  rotateAfter: number;
  now?: () => number;
}

export interface Released {
  /** The plaintext; the caller zeroes it once the response is serialised. */
  value: Buffer;
  version: number;
  policy: SecretPolicy;
}

export class Vault {
  private readonly store: VaultStore;
  private readonly audit: AuditWriter;
  private readonly log: Logger;
  private readonly kdf: KdfParams;
  private readonly rotateAfter: number;
  private readonly now: () => number;
  private kek: Buffer | undefined;
  private readonly keys = new Map<number, Buffer>();
  // Resolve's row cache: ciphertext and policy as read at `epoch` (never plaintext).
  private readonly rowCache = new Map<string, { row: SecretRow; epoch: number }>();
  // One Argon2id derivation at a time: each takes ~128 MiB and both cores' patience.
  private kdfQueue: Promise<unknown> = Promise.resolve();

  constructor(o: VaultOptions) {
    this.store = o.store;
    this.audit = o.audit;
    this.log = o.log;
    this.kdf = o.kdf;
    this.rotateAfter = o.rotateAfter;
    this.now = o.now ?? Date.now;
  }

  get sealed(): boolean {
    return this.kek === undefined;
  }

  private serialKdf<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.kdfQueue.then(fn, fn);
    this.kdfQueue = run.catch(() => undefined);
    return run;
  }

  private requireKek(): Buffer {
    if (!this.kek) throw new VaultSealed();
    return this.kek;
  }

  /** Drops every key from memory (zeroed, not just unreferenced). */
  private dropKeys(): void {
    this.kek?.fill(0);
    this.kek = undefined;
    for (const k of this.keys.values()) k.fill(0);
    this.keys.clear();
    this.rowCache.clear();
  }

  private async auditQuiet(e: AuditEntry): Promise<void> {
    await this.audit.record(e).catch((err: unknown) => this.log.error({ err, action: e.action }, 'audit record could not be written'));
  }

  async status(): Promise<StatusResponse> {
    const s = await this.store.status();
    return {
      sealed: this.sealed,
      initialized: s.kdfParams !== undefined,
      epoch: s.epoch,
      secrets: s.secrets,
      activeKeyId: s.activeKeyId,
      kdf: s.kdfParams ? describeKdf(s.kdfParams) : '',
      activeKeyUses: s.activeKeyUses,
      rotateAfter: this.rotateAfter,
      keyringCreated: false,
    };
  }

  // ---- seal state -------------------------------------------------------

  /** Unseals with the passphrase; the first unseal of an empty vault creates the keyring. Zeroes `passphrase`. */
  async unseal(passphrase: Buffer, caller: string): Promise<StatusResponse> {
    try {
      return await this.serialKdf(() => this.unsealLocked(passphrase, caller));
    } finally {
      passphrase.fill(0);
    }
  }

  private async unsealLocked(passphrase: Buffer, caller: string): Promise<StatusResponse> {
    if (passphrase.length === 0) throw new InvalidArgument('the passphrase is empty');
    if (passphrase.length > MAX_PASSPHRASE_BYTES) throw new InvalidArgument(`the passphrase is longer than ${MAX_PASSPHRASE_BYTES} bytes`);
    const kr = await this.store.keyring();
    if (!kr) {
      checkNewPassphrase(passphrase);
      const t0 = performance.now();
      const salt = newSalt();
      const kek = await deriveKek(passphrase, salt, this.kdf);
      const dk = newKey();
      let created: boolean;
      try {
        created = await this.store.initialize(
          { kdfParams: this.kdf, salt, check: makeCheck(kek, salt) },
          { id: 1, wrapped: wrapKey(kek, 1, dk) },
        );
      } catch (err) {
        kek.fill(0);
        dk.fill(0);
        throw err;
      }
      if (!created) {
        // Another replica created the keyring first: unseal against it like any other.
        kek.fill(0);
        dk.fill(0);
        return this.unsealLocked(passphrase, caller);
      }
      this.dropKeys();
      this.kek = kek;
      this.keys.set(1, dk);
      await this.store.bumpEpoch();
      await this.auditQuiet({ caller, action: 'unseal', allowed: true, reason: 'keyring_created' });
      this.log.info(
        { kdf: describeKdf(this.kdf), ms: Math.round(performance.now() - t0) },
        'vault initialised: created a new keyring and data key 1 from the passphrase; the vault is unsealed. Without this passphrase the secrets cannot be recovered.',
      );
      return { ...(await this.status()), keyringCreated: true };
    }
    const t0 = performance.now();
    const kek = await deriveKek(passphrase, kr.salt, kr.kdfParams);
    if (!verifyCheck(kek, kr.salt, kr.check)) {
      kek.fill(0);
      await this.auditQuiet({ caller, action: 'unseal', allowed: false, reason: 'wrong_passphrase' });
      this.log.warn('unseal refused: wrong passphrase (the vault state is unchanged)');
      throw new WrongPassphrase();
    }
    if (!this.sealed) {
      kek.fill(0);
      return this.status();
    }
    const unwrapped = new Map<number, Buffer>();
    try {
      for (const row of await this.store.dataKeys()) unwrapped.set(row.id, unwrapKey(kek, row.id, row.wrapped));
    } catch (err) {
      kek.fill(0);
      for (const k of unwrapped.values()) k.fill(0);
      if (err instanceof AuthenticationFailed) {
        await this.auditQuiet({ caller, action: 'unseal', allowed: false, reason: 'keyring_damaged' });
        throw new KeyringDamaged('a data key does not open under the key derived from the right passphrase');
      }
      throw err;
    }
    if (!this.sealed) {
      // A concurrent unseal finished first (cannot happen under serialKdf, kept for safety).
      kek.fill(0);
      for (const k of unwrapped.values()) k.fill(0);
      return this.status();
    }
    this.kek = kek;
    for (const [id, k] of unwrapped) this.keys.set(id, k);
    await this.store.bumpEpoch();
    await this.auditQuiet({ caller, action: 'unseal', allowed: true, reason: 'allowed' });
    this.log.info({ kdf: describeKdf(kr.kdfParams), data_keys: unwrapped.size, ms: Math.round(performance.now() - t0) }, 'vault unsealed');
    return this.status();
  }

  async seal(caller: string): Promise<StatusResponse> {
    const was = !this.sealed;
    this.dropKeys();
    if (was) {
      await this.store.bumpEpoch();
      this.log.info('vault sealed: keys zeroed and dropped from memory');
    }
    await this.auditQuiet({ caller, action: 'seal', allowed: true, reason: was ? 'allowed' : 'already_sealed' });
    return this.status();
  }

  /** Re-wraps every data key under a KEK from the new passphrase; secrets are not re-encrypted. Zeroes both inputs. */
  async changePassphrase(oldPass: Buffer, newPass: Buffer, caller: string): Promise<StatusResponse> {
    try {
      return await this.serialKdf(async () => {
        checkNewPassphrase(newPass);
        if (oldPass.equals(newPass)) throw new InvalidArgument('the new passphrase is the same as the current one');
        const kr = await this.store.keyring();
        if (!kr) throw new VaultSealed('the vault has no keyring yet; `talon vault unseal` creates one with the passphrase you choose');
        const oldKek = await deriveKek(oldPass, kr.salt, kr.kdfParams);
        if (!verifyCheck(oldKek, kr.salt, kr.check)) {
          oldKek.fill(0);
          await this.auditQuiet({ caller, action: 'change_passphrase', allowed: false, reason: 'wrong_passphrase' });
          throw new WrongPassphrase();
        }
        const salt = newSalt();
        let newKek: Buffer | undefined;
        try {
          newKek = await deriveKek(newPass, salt, this.kdf);
          const nk = newKek;
          await this.store.tx(async (c) => {
            const locked = await this.store.keyring(c, { forUpdate: true });
            if (!locked || !locked.salt.equals(kr.salt))
              throw new TalonError('conflict', 'the keyring changed during the passphrase change; try again');
            const rewrapped: Array<{ id: number; wrapped: Sealed }> = [];
            for (const row of await this.store.dataKeys(c)) {
              let dk: Buffer;
              try {
                dk = unwrapKey(oldKek, row.id, row.wrapped);
              } catch (err) {
                if (err instanceof AuthenticationFailed) throw new KeyringDamaged(`data key ${row.id} does not open`);
                throw err;
              }
              rewrapped.push({ id: row.id, wrapped: wrapKey(nk, row.id, dk) });
              dk.fill(0);
            }
            await this.store.replaceKeyring(c, { kdfParams: this.kdf, salt, check: makeCheck(nk, salt) }, rewrapped);
          });
          if (this.kek) {
            this.kek.fill(0);
            this.kek = nk;
            newKek = undefined; // now owned by the unsealed state
          }
        } finally {
          oldKek.fill(0);
          newKek?.fill(0);
        }
        await this.auditQuiet({ caller, action: 'change_passphrase', allowed: true, reason: 'allowed' });
        this.log.info({ kdf: describeKdf(this.kdf) }, 'vault passphrase changed: data keys re-wrapped under the new key-encryption key');
        return this.status();
      });
    } finally {
      oldPass.fill(0);
      newPass.fill(0);
    }
  }

  // ---- data keys --------------------------------------------------------

  /** Makes a fresh data key active inside `c`. Refuses if this replica's KEK no longer opens the keyring. */
  private async rotateInTx(c: PoolClient, initialUses: number): Promise<{ id: number; retired: number; key: Buffer }> {
    const kr = await this.store.keyring(c, { forUpdate: true });
    if (!kr) throw new KeyringDamaged('the keyring row is missing');
    const kek = this.requireKek();
    if (!verifyCheck(kek, kr.salt, kr.check)) {
      this.dropKeys();
      throw new VaultSealed(
        'the vault passphrase was changed on another replica; this replica sealed itself: unseal it with the new passphrase',
      );
    }
    const dk = newKey();
    try {
      const r = await this.store.insertActiveKey(c, (id) => wrapKey(kek, id, dk), initialUses);
      return { ...r, key: dk };
    } catch (err) {
      dk.fill(0);
      throw err;
    }
  }

  /** Keeps a data key created by a committed rotation (never one from a rolled-back transaction). */
  private adoptKey(id: number, key: Buffer): void {
    if (this.sealed) {
      key.fill(0);
      return;
    }
    const old = this.keys.get(id);
    if (old && old !== key) old.fill(0);
    this.keys.set(id, key);
  }

  async rotateKey(caller: string): Promise<{ activeKeyId: number; retiredKeyId: number }> {
    this.requireKek();
    // Queued behind unseal and passphrase changes, so it never wraps under a KEK being replaced.
    const r = await this.serialKdf(async () => {
      let fresh: Buffer | undefined;
      try {
        const out = await this.store.tx(async (c) => {
          const rot = await this.rotateInTx(c, 0);
          fresh = rot.key;
          await this.store.bumpEpoch(c);
          return rot;
        });
        this.adoptKey(out.id, out.key);
        return out;
      } catch (err) {
        fresh?.fill(0);
        throw err;
      }
    });
    await this.auditQuiet({ caller, action: 'rotate_key', allowed: true, reason: `new_key_${r.id}` });
    this.log.info({ active_key_id: r.id, retired_key_id: r.retired }, 'data key rotated; older keys stay for decryption');
    return { activeKeyId: r.id, retiredKeyId: r.retired };
  }

  /** The unwrapped data key `id`, loading (and unwrapping) it if another replica created it. */
  private async keyFor(id: number): Promise<Buffer> {
    const cached = this.keys.get(id);
    if (cached) return cached;
    this.requireKek();
    const row = await this.store.dataKey(id);
    if (!row) throw new KeyringDamaged(`data key ${id} is missing`);
    const kek = this.requireKek();
    const again = this.keys.get(id);
    if (again) return again;
    try {
      const dk = unwrapKey(kek, id, row.wrapped);
      this.keys.set(id, dk);
      return dk;
    } catch (err) {
      if (!(err instanceof AuthenticationFailed)) throw err;
      const kr = await this.store.keyring();
      if (kr && this.kek && !verifyCheck(this.kek, kr.salt, kr.check)) {
        this.dropKeys();
        throw new VaultSealed(
          'the vault passphrase was changed on another replica; this replica sealed itself: unseal it with the new passphrase',
        );
      }
      throw new KeyringDamaged(`data key ${id} does not open under the key-encryption key`);
    }
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
    let keyId: number;
    let key: Buffer;
    const taken = await this.store.takeActiveKey(c, this.rotateAfter);
    if (taken) {
      keyId = taken.id;
      key = await this.keyFor(keyId);
    } else {
      // The active key reached its budget (or there is none): this encryption is the new key's first.
      const r = await this.rotateInTx(c, 1);
      fresh(r.id, r.key);
      keyId = r.id;
      key = r.key;
      this.log.info(
        { active_key_id: r.id, retired_key_id: r.retired, rotate_after: this.rotateAfter },
        'data key reached its encryption budget; rotated',
      );
    }
    this.requireKek();
    const sealed = seal(
      key,
      value,
      secretAad({ owner: row.owner, name: row.name, version: row.version, keyId, policyHash: sha256(canonicalPolicy(row.policy)) }),
    );
    return { keyId, ...sealed };
  }

  /** Decrypts a stored row; the caller zeroes the result. */
  private async decryptRow(r: SecretRow): Promise<Buffer> {
    const key = await this.keyFor(r.keyId);
    this.requireKek();
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

  // ---- secrets (admin) --------------------------------------------------

  private info(name: string, version: number, policy: StoredPolicy, createdAtMs: number, keyId: number): SecretInfo {
    return { name, version, policy: toProtoPolicy(policy), createdAtMs, keyId };
  }

  private async writeVersion(
    name: string,
    value: Uint8Array,
    policyFor: (live: SecretRow | undefined) => Promise<StoredPolicy>,
  ): Promise<SecretInfo> {
    let fresh: { id: number; key: Buffer } | undefined;
    try {
      const info = await this.store.tx(async (c) => {
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
        return this.info(name, nextVersion, policy, createdAtMs, enc.keyId);
      });
      if (fresh) this.adoptKey(fresh.id, fresh.key);
      return info;
    } catch (err) {
      fresh?.key.fill(0);
      if (pgUniqueViolation(err))
        throw new TalonError('conflict', `secret ${name} was changed at the same time by another call; try again`);
      throw err;
    }
  }

  /** Stores `value` as the next version of `name` under `policy`. The caller zeroes `value`. */
  async setSecret(name: string, value: Uint8Array, policyIn: SecretPolicy | undefined, caller: string): Promise<SecretInfo> {
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
      this.requireKek();
      const info = await this.writeVersion(name, value, () => Promise.resolve(policy));
      await this.auditQuiet({ ...base, allowed: true, reason: `version_${info.version}` });
      this.log.info({ secret: name, version: info.version, key_id: info.keyId }, 'secret stored');
      return info;
    } catch (err) {
      await this.auditQuiet({ ...base, allowed: false, reason: (err as TalonError).code ?? 'internal' });
      throw err;
    }
  }

  /** New value, same policy. The live row must still authenticate, so a policy edited in the database is never re-sealed. */
  async rotateSecret(name: string, value: Uint8Array, caller: string): Promise<SecretInfo> {
    const base = { caller, action: 'rotate_secret', owner: OWNER, secretName: validSecretName(name) ? name : '<invalid name>' };
    try {
      checkName(name);
      checkValue(value);
      this.requireKek();
      const info = await this.writeVersion(name, value, async (live) => {
        if (!live) throw new SecretNotFound(name);
        (await this.decryptRow(live)).fill(0);
        return live.policy;
      });
      await this.auditQuiet({ ...base, allowed: true, reason: `version_${info.version}` });
      this.log.info({ secret: name, version: info.version, key_id: info.keyId }, 'secret rotated');
      return info;
    } catch (err) {
      await this.auditQuiet({ ...base, allowed: false, reason: (err as TalonError).code ?? 'internal' });
      throw err;
    }
  }

  async deleteSecret(name: string, caller: string): Promise<number> {
    checkName(name);
    const n = await this.store.tx(async (c) => {
      const d = await this.store.deleteSecret(c, OWNER, name);
      if (d > 0) await this.store.bumpEpoch(c);
      return d;
    });
    await this.auditQuiet({
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
  async listSecrets(): Promise<SecretInfo[]> {
    const rows = await this.store.liveSecrets(OWNER);
    return rows.map((r) => this.info(r.name, r.version, r.policy, r.createdAtMs, r.keyId));
  }

  // ---- egress -----------------------------------------------------------

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
    const deny = async (reason: string, err: TalonError): Promise<never> => {
      await this.auditQuiet({ ...base, allowed: false, reason });
      throw err;
    };
    if (!nameOk) return deny('invalid_argument', new InvalidArgument('name is not a valid secret name'));
    if (!host) return deny('invalid_argument', new InvalidArgument('host is not a valid host name or IP address'));
    if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535)
      return deny('invalid_argument', new InvalidArgument('port must be 1-65535'));
    if (req.principal === '') return deny('invalid_argument', new InvalidArgument('principal is required'));
    if (this.sealed) return deny('vault_sealed', new VaultSealed());
    const ctx = { principal: req.principal, host, port: req.port, placement: req.placement, field: req.field };
    const allowedEntry = { ...base, allowed: true, reason: 'allowed' };

    // A denial on the cached row is re-checked on the current row below, which is also what gets audited.
    const cached = this.rowCache.get(req.name);
    if (cached && decide(req.name, cached.row.policy, ctx, this.now()).allowed) {
      const value = await this.decryptRow(cached.row).catch(() => undefined);
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
      if (this.sealed) return deny('vault_sealed', new VaultSealed());
      let value: Buffer;
      try {
        value = await this.decryptRow(row);
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
    const deny = async (reason: string, err: TalonError): Promise<never> => {
      await this.auditQuiet({ ...base, allowed: false, reason });
      throw err;
    };
    if (!nameOk) return deny('invalid_argument', new InvalidArgument('secret_name is not a valid secret name'));
    if (!isSignatureScheme(req.scheme))
      return deny('invalid_argument', new InvalidArgument(`scheme must be one of ${SIGNATURE_SCHEMES.join(', ')}`));
    if (req.message.length > 4 * 1024 * 1024) return deny('invalid_argument', new InvalidArgument('message larger than 4 MiB'));
    if (this.sealed) return deny('vault_sealed', new VaultSealed());
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
    const key = await this.decryptRow(row).catch(async (err: unknown) =>
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
    await this.auditQuiet({ ...base, allowed: valid, reason: valid ? 'valid_signature' : 'invalid_signature' });
    return valid;
  }

  /** Fingerprints of every live secret's encoded forms; plaintexts are zeroed as soon as they are hashed. */
  async scanIndex(caller: string): Promise<{ epoch: number; secrets: SecretFingerprint[] }> {
    const base = { caller, action: 'scan_index', owner: OWNER, secretName: '*' };
    if (this.sealed) {
      await this.auditQuiet({ ...base, allowed: false, reason: 'vault_sealed' });
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
        v = await this.decryptRow(r);
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
