// The vault's keys: sealed (no key in memory) or unsealed (the KEK derived from the
// passphrase and the unwrapped data keys in memory). Unseal, seal, passphrase
// change and data-key rotation; every key dropped from memory is zeroed first.
import { InvalidArgument, TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { PoolClient } from '@talon/kit/db';
import type { StatusResponse } from '@talon/proto';
import { AttestationFailed, type AttestationGate } from './attestation/gate.ts';
import type { AuditWriter } from './audit.ts';
import { auditQuietly } from './context.ts';
import {
  AuthenticationFailed,
  deriveKek,
  describeKdf,
  makeCheck,
  newKey,
  newSalt,
  unwrapKey,
  verifyCheck,
  wrapKey,
  type KdfParams,
  type Sealed,
} from './crypto.ts';
import { KeyringDamaged, VaultSealed, WrongPassphrase } from './errors.ts';
import type { VaultStore } from './store.ts';

export const MIN_PASSPHRASE_CHARS = 12;
export const MAX_PASSPHRASE_BYTES = 1024;

function checkNewPassphrase(p: Buffer): void {
  if (p.length > MAX_PASSPHRASE_BYTES) throw new InvalidArgument(`the passphrase is longer than ${MAX_PASSPHRASE_BYTES} bytes`);
  if ([...p.toString('utf8')].length < MIN_PASSPHRASE_CHARS) {
    throw new InvalidArgument(`choose a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters (a few random words work well)`);
  }
}

export interface KeyringOptions {
  store: VaultStore;
  audit: AuditWriter;
  log: Logger;
  /** Argon2id parameters for new keyrings and passphrase changes (unseal uses the stored ones). */
  kdf: KdfParams;
  /** Encryptions per data key before it is rotated automatically. */
  rotateAfter: number;
  /** When set, no key is derived or unwrapped from a passphrase until this passes (docs/confidential-computing.md). */
  attestation?: AttestationGate;
}

export class Keyring {
  private readonly store: VaultStore;
  private readonly audit: AuditWriter;
  private readonly log: Logger;
  private readonly kdf: KdfParams;
  private readonly rotateAfter: number;
  private readonly attestation: AttestationGate | undefined;
  private kek: Buffer | undefined;
  private readonly keys = new Map<number, Buffer>();
  // One Argon2id derivation at a time: each takes ~128 MiB and both cores' patience.
  private kdfQueue: Promise<unknown> = Promise.resolve();
  private readonly dropListeners: Array<() => void> = [];

  constructor(o: KeyringOptions) {
    this.store = o.store;
    this.audit = o.audit;
    this.log = o.log;
    this.kdf = o.kdf;
    this.rotateAfter = o.rotateAfter;
    this.attestation = o.attestation;
  }

  get sealed(): boolean {
    return this.kek === undefined;
  }

  /** `fn` runs whenever the keys are dropped (seal, or a passphrase changed elsewhere). */
  onDrop(fn: () => void): void {
    this.dropListeners.push(fn);
  }

  private serialKdf<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.kdfQueue.then(fn, fn);
    this.kdfQueue = run.catch(() => undefined);
    return run;
  }

  requireKek(): Buffer {
    if (!this.kek) throw new VaultSealed();
    return this.kek;
  }

  /** Drops every key from memory (zeroed, not just unreferenced). */
  private dropKeys(): void {
    this.kek?.fill(0);
    this.kek = undefined;
    for (const k of this.keys.values()) k.fill(0);
    this.keys.clear();
    for (const fn of this.dropListeners) fn();
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

  /** Fails closed: anything but a passing verdict is audited and thrown as AttestationFailed. */
  private async attest(caller: string, action: string): Promise<void> {
    if (!this.attestation) return;
    try {
      const claims = await this.attestation.check();
      this.log.info({ action, attestation: claims }, 'attestation passed');
    } catch (err) {
      const failed =
        err instanceof AttestationFailed ? err : new AttestationFailed('verifier_error', 'the attestation gate failed', { cause: err });
      await auditQuietly(this.audit, this.log, { caller, action, allowed: false, reason: `attestation_failed:${failed.reason}` });
      this.log.error({ action, reason: failed.reason }, failed.message);
      throw failed;
    }
  }

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
    // Before any key exists in memory: an unattested environment never holds the KEK.
    await this.attest(caller, 'unseal');
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
      await auditQuietly(this.audit, this.log, { caller, action: 'unseal', allowed: true, reason: 'keyring_created' });
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
      await auditQuietly(this.audit, this.log, { caller, action: 'unseal', allowed: false, reason: 'wrong_passphrase' });
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
        await auditQuietly(this.audit, this.log, { caller, action: 'unseal', allowed: false, reason: 'keyring_damaged' });
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
    await auditQuietly(this.audit, this.log, { caller, action: 'unseal', allowed: true, reason: 'allowed' });
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
    await auditQuietly(this.audit, this.log, { caller, action: 'seal', allowed: true, reason: was ? 'allowed' : 'already_sealed' });
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
        // A passphrase change unwraps every data key, so it is gated like an unseal.
        await this.attest(caller, 'change_passphrase');
        const oldKek = await deriveKek(oldPass, kr.salt, kr.kdfParams);
        if (!verifyCheck(oldKek, kr.salt, kr.check)) {
          oldKek.fill(0);
          await auditQuietly(this.audit, this.log, { caller, action: 'change_passphrase', allowed: false, reason: 'wrong_passphrase' });
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
        await auditQuietly(this.audit, this.log, { caller, action: 'change_passphrase', allowed: true, reason: 'allowed' });
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
  adoptKey(id: number, key: Buffer): void {
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
    await auditQuietly(this.audit, this.log, { caller, action: 'rotate_key', allowed: true, reason: `new_key_${r.id}` });
    this.log.info({ active_key_id: r.id, retired_key_id: r.retired }, 'data key rotated; older keys stay for decryption');
    return { activeKeyId: r.id, retiredKeyId: r.retired };
  }

  /** The unwrapped data key `id`, loading (and unwrapping) it if another replica created it. */
  async keyFor(id: number): Promise<Buffer> {
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
   * The data key for one new encryption inside `c`, counted against the active key's
   * budget. A key created here (`fresh`) is adopted by the caller once `c` commits.
   */
  async keyForEncryption(c: PoolClient, fresh: (id: number, key: Buffer) => void): Promise<{ keyId: number; key: Buffer }> {
    const taken = await this.store.takeActiveKey(c, this.rotateAfter);
    if (taken) return { keyId: taken.id, key: await this.keyFor(taken.id) };
    // The active key reached its budget (or there is none): this encryption is the new key's first.
    const r = await this.rotateInTx(c, 1);
    fresh(r.id, r.key);
    this.log.info(
      { active_key_id: r.id, retired_key_id: r.retired, rotate_after: this.rotateAfter },
      'data key reached its encryption budget; rotated',
    );
    return { keyId: r.id, key: r.key };
  }
}
