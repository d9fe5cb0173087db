// The vault: its keyring (sealed or unsealed, keyring.ts), the secrets sealed under
// it (secrets.ts), the two ways egress uses a secret (release.ts) and the scan
// index of fingerprints (scan-index.ts), put together behind one API for the gRPC
// handlers.
import type { Logger } from '@talon/kit/log';
import type { ResolveRequest, SecretInfo, SecretPolicy, StatusResponse, VerifySignatureRequest } from '@talon/proto';
import type { AttestationGate } from './attestation/gate.ts';
import type { AuditWriter } from './audit.ts';
import type { KdfParams } from './crypto.ts';
import type { SecretFingerprintOut as SecretFingerprint } from './fingerprint.ts';
import { Keyring } from './keyring.ts';
import { Release, type Released } from './release.ts';
import { ScanIndex } from './scan-index.ts';
import { Secrets } from './secrets.ts';
import type { VaultStore } from './store.ts';
import { StateWatch, type VaultStateView } from './watch.ts';

export { OWNER } from './context.ts';
export { MAX_PASSPHRASE_BYTES, MIN_PASSPHRASE_CHARS } from './keyring.ts';
export { MAX_VALUE_BYTES, validSecretName } from './secrets.ts';
export type { Released, VaultStateView };

export interface VaultOptions {
  store: VaultStore;
  audit: AuditWriter;
  log: Logger;
  /** Argon2id parameters for new keyrings and passphrase changes (unseal uses the stored ones). */
  kdf: KdfParams;
  /** Encryptions per data key before it is rotated automatically. */
  rotateAfter: number;
  /** Remote attestation required before any unseal (docs/confidential-computing.md); unset: none. */
  attestation?: AttestationGate;
  now?: () => number;
}

export class Vault {
  private readonly keyring: Keyring;
  private readonly secrets: Secrets;
  private readonly release: Release;
  private readonly scan: ScanIndex;
  private readonly state: StateWatch;

  constructor(o: VaultOptions) {
    const ctx = { store: o.store, audit: o.audit, log: o.log, now: o.now ?? Date.now };
    const { store, audit, log, kdf, rotateAfter, attestation } = o;
    this.keyring = new Keyring({ store, audit, log, kdf, rotateAfter, attestation });
    this.secrets = new Secrets(ctx, this.keyring);
    this.release = new Release(ctx, this.keyring, this.secrets);
    this.scan = new ScanIndex(ctx, this.keyring, this.secrets);
    this.state = new StateWatch(
      async () => ({ epoch: await o.store.epoch(), sealed: this.keyring.sealed }),
      () => this.keyring.sealed,
    );
    // Keys dropped without a seal call (a passphrase changed on another replica) are a change too.
    this.keyring.onDrop(() => void this.state.changed());
  }

  /** Runs `op`, then tells watchers whatever it changed (success or not: a failed op may have sealed). */
  private changing<T>(op: Promise<T>): Promise<T> {
    return op.finally(() => void this.state.changed());
  }

  // ---- watch ----------------------------------------------------------------

  /** `send` gets the state now and on every change of epoch or seal state, until unsubscribed. */
  watch(send: (s: VaultStateView) => void): { done: Promise<void>; unsubscribe: () => void } {
    return this.state.subscribe(send);
  }

  /** Another replica may have moved the epoch (a notification, or the fallback poll). */
  stateMayHaveChanged(): void {
    void this.state.changed();
  }

  get sealed(): boolean {
    return this.keyring.sealed;
  }

  status(): Promise<StatusResponse> {
    return this.keyring.status();
  }

  // ---- keyring ------------------------------------------------------------

  /** Unseals with the passphrase; the first unseal of an empty vault creates the keyring. Zeroes `passphrase`. */
  unseal(passphrase: Buffer, caller: string): Promise<StatusResponse> {
    return this.changing(this.keyring.unseal(passphrase, caller));
  }

  seal(caller: string): Promise<StatusResponse> {
    return this.changing(this.keyring.seal(caller));
  }

  /** Re-wraps every data key under a KEK from the new passphrase; secrets are not re-encrypted. Zeroes both inputs. */
  changePassphrase(oldPass: Buffer, newPass: Buffer, caller: string): Promise<StatusResponse> {
    return this.keyring.changePassphrase(oldPass, newPass, caller);
  }

  rotateKey(caller: string): Promise<{ activeKeyId: number; retiredKeyId: number }> {
    return this.changing(this.keyring.rotateKey(caller));
  }

  // ---- secrets (admin) ----------------------------------------------------

  /** Stores `value` as the next version of `name` under `policy`. The caller zeroes `value`. */
  setSecret(name: string, value: Uint8Array, policy: SecretPolicy | undefined, caller: string): Promise<SecretInfo> {
    return this.changing(this.secrets.set(name, value, policy, caller));
  }

  /** New value, same policy. */
  rotateSecret(name: string, value: Uint8Array, caller: string): Promise<SecretInfo> {
    return this.changing(this.secrets.rotate(name, value, caller));
  }

  deleteSecret(name: string, caller: string): Promise<number> {
    return this.changing(this.secrets.delete(name, caller));
  }

  /** Names and metadata only: this never decrypts. */
  listSecrets(): Promise<SecretInfo[]> {
    return this.secrets.list();
  }

  // ---- egress ---------------------------------------------------------------

  /** Releases one value for one outbound request, once its policy allows it and the release is audited. */
  resolve(req: ResolveRequest, caller: string): Promise<Released> {
    return this.release.resolve(req, caller);
  }

  /** Checks a webhook signature with a verification key that never leaves the vault. */
  verifySignature(req: VerifySignatureRequest, caller: string): Promise<boolean> {
    return this.release.verifySignature(req, caller);
  }

  /** Fingerprints of every live secret's encoded forms, for egress's leak scanner. */
  scanIndex(caller: string): Promise<{ epoch: number; secrets: SecretFingerprint[] }> {
    return this.scan.build(caller);
  }
}
