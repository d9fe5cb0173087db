// The vault's errors: stable codes (kit ERROR_TABLE) and messages that never carry a
// value, a passphrase or key material.
import { TalonError } from '@talon/kit/errors';
import type { DenyReason } from './policy.ts';

export class VaultSealed extends TalonError {
  constructor(
    message = 'the vault is sealed; an operator must unseal it (`talon vault unseal`, or start Talon with TALON_VAULT_PASSPHRASE)',
  ) {
    super('vault_sealed', message);
    this.name = 'VaultSealed';
  }
}

export class WrongPassphrase extends TalonError {
  constructor() {
    super('wrong_passphrase', 'wrong passphrase: it does not open this vault’s keyring; nothing was changed');
    this.name = 'WrongPassphrase';
  }
}

export class SecretNotFound extends TalonError {
  constructor(name: string) {
    super('not_found', `no secret named ${name} (see talon secrets list)`);
    this.name = 'SecretNotFound';
  }
}

/** policy_denied; the message starts with the stable reason, e.g. "host_not_bound: ...". */
export class SecretPolicyDenied extends TalonError {
  readonly reason: DenyReason;
  constructor(reason: DenyReason, message: string) {
    super('policy_denied', `${reason}: ${message}`);
    this.name = 'SecretPolicyDenied';
    this.reason = reason;
  }
}

/** A stored ciphertext failed authentication under its row's associated data. */
export class SecretCorrupt extends TalonError {
  constructor(name: string, version: number) {
    super(
      'secret_corrupt',
      `secret ${name} (version ${version}) failed its integrity check: its stored ciphertext, key or policy does not belong to this row ` +
        '(altered or copied in the database). The value was not released; set the secret again (talon secrets set) or restore the row from a backup.',
    );
    this.name = 'SecretCorrupt';
  }
}

export class AuditUnavailable extends TalonError {
  constructor(cause: unknown) {
    super('unavailable', 'the vault audit log cannot be written; no value is released without an audit record', { cause });
    this.name = 'AuditUnavailable';
  }
}

export class KeyringDamaged extends TalonError {
  constructor(message: string) {
    super('secret_corrupt', `vault keyring damaged: ${message}. Restore the vault schema from a backup.`);
    this.name = 'KeyringDamaged';
  }
}
