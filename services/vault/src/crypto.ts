// Envelope encryption primitives. Pure functions over Buffers; no I/O, no state.
//
//   passphrase --Argon2id(salt, params)--> KEK (32 B, memory only while unsealed)
//   KEK --AES-256-GCM(aad = key id)--> wrapped data keys (stored)
//   data key --AES-256-GCM(aad = owner, name, version, key id, policy hash)--> secret ciphertext (stored)
//
// Every encryption draws a fresh random 96-bit nonce. The associated data binds a
// ciphertext to the row that holds it, so a ciphertext copied onto another row
// (another name, version, key or policy) fails authentication instead of decrypting.
import { argon2, createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/**
 * Automatic data-key rotation threshold. NIST SP 800-38D caps random-nonce GCM at
 * 2^32 encryptions per key (nonce-collision probability about 2^-33 there); at 2^24
 * the birthday bound is n^2 / 2^97 = 2^-49, far below any practical risk, and the
 * count is still far beyond what a secret store ever encrypts between rotations.
 */
export const DEFAULT_ROTATE_AFTER = 2 ** 24;

export interface KdfParams {
  /** Memory cost in KiB. */
  memoryKiB: number;
  passes: number;
  parallelism: number;
}

/** OWASP's minimum for Argon2id; anything weaker is refused. */
export const KDF_MINIMUM: KdfParams = { memoryKiB: 19 * 1024, passes: 2, parallelism: 1 };
/** Upper bounds accepted from the keyring row (a tampered row must not exhaust memory). */
export const KDF_MAXIMUM: KdfParams = { memoryKiB: 4 * 1024 * 1024, passes: 64, parallelism: 64 };
/** Measured on the reference 2-core machine at about 0.4-0.5 s per derivation (see bench/vault.ts). */
export const KDF_DEFAULT: KdfParams = { memoryKiB: 128 * 1024, passes: 3, parallelism: 1 };

export class KdfParamsInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KdfParamsInvalid';
  }
}

export function checkKdfParams(p: KdfParams): KdfParams {
  for (const k of ['memoryKiB', 'passes', 'parallelism'] as const) {
    const v = p[k];
    if (!Number.isSafeInteger(v) || v < KDF_MINIMUM[k] || v > KDF_MAXIMUM[k]) {
      throw new KdfParamsInvalid(`Argon2id ${k} must be an integer from ${KDF_MINIMUM[k]} to ${KDF_MAXIMUM[k]} (got ${String(v)})`);
    }
  }
  if (p.memoryKiB < 8 * p.parallelism) throw new KdfParamsInvalid('Argon2id memory must be at least 8 KiB per lane');
  return p;
}

export function describeKdf(p: KdfParams): string {
  return `argon2id m=${p.memoryKiB}KiB t=${p.passes} p=${p.parallelism}`;
}

/** Derives the 32-byte key-encryption key. The caller zeroes `passphrase` and the result. */
export async function deriveKek(passphrase: Buffer, salt: Buffer, params: KdfParams): Promise<Buffer> {
  checkKdfParams(params);
  if (salt.length < 16) throw new KdfParamsInvalid('the Argon2id salt must be at least 16 bytes');
  return new Promise<Buffer>((resolve, reject) => {
    argon2(
      'argon2id',
      {
        message: passphrase,
        nonce: salt,
        parallelism: params.parallelism,
        tagLength: KEY_BYTES,
        memory: params.memoryKiB,
        passes: params.passes,
      },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

export function newKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

export function newSalt(): Buffer {
  return randomBytes(16);
}

export interface Sealed {
  nonce: Buffer;
  /** Ciphertext followed by the 16-byte GCM tag. */
  ciphertext: Buffer;
}

/** The GCM tag did not verify: wrong key, or the ciphertext, nonce or associated data changed. */
export class AuthenticationFailed extends Error {
  constructor() {
    super('AES-GCM authentication failed');
    this.name = 'AuthenticationFailed';
  }
}

export function seal(key: Buffer, plaintext: Uint8Array, aad: Buffer): Sealed {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(aad);
  const body = c.update(plaintext);
  const final = c.final();
  const ciphertext = Buffer.concat([body, final, c.getAuthTag()]);
  body.fill(0);
  return { nonce, ciphertext };
}

/** Decrypts into a fresh Buffer the caller must zero after use. */
export function open(key: Buffer, s: Sealed, aad: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  if (s.nonce.length !== NONCE_BYTES || s.ciphertext.length < TAG_BYTES) throw new AuthenticationFailed();
  const d = createDecipheriv('aes-256-gcm', key, s.nonce, { authTagLength: TAG_BYTES });
  d.setAAD(aad);
  d.setAuthTag(s.ciphertext.subarray(s.ciphertext.length - TAG_BYTES));
  const body = d.update(s.ciphertext.subarray(0, s.ciphertext.length - TAG_BYTES));
  try {
    d.final();
  } catch {
    body.fill(0);
    throw new AuthenticationFailed();
  }
  return body;
}

// Associated data: a domain label, then length-prefixed fields, so no two
// different tuples share an encoding ("ab","c" vs "a","bc").
function aad(label: string, fields: ReadonlyArray<string | number | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`${label}\0`, 'utf8')];
  for (const f of fields) {
    const b = typeof f === 'number' ? u32(f) : typeof f === 'string' ? Buffer.from(f, 'utf8') : f;
    parts.push(u32(b.length), b);
  }
  return Buffer.concat(parts);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export interface SecretRowIdentity {
  owner: string;
  name: string;
  version: number;
  keyId: number;
  /** SHA-256 of the canonical policy (see policy.ts canonicalPolicy). */
  policyHash: Buffer;
}

export function secretAad(r: SecretRowIdentity): Buffer {
  return aad('talon.vault.secret.v1', [r.owner, r.name, r.version, r.keyId, r.policyHash]);
}

export function dataKeyAad(keyId: number): Buffer {
  return aad('talon.vault.data-key.v1', [keyId]);
}

export function checkAad(salt: Buffer): Buffer {
  return aad('talon.vault.kek-check.v1', [salt]);
}

const CHECK_PLAINTEXT = Buffer.from('talon vault key-encryption key check v1', 'utf8');

/** A value only the right KEK opens: lets unseal tell a wrong passphrase apart from damage. */
export function makeCheck(kek: Buffer, salt: Buffer): Sealed {
  return seal(kek, CHECK_PLAINTEXT, checkAad(salt));
}

export function verifyCheck(kek: Buffer, salt: Buffer, check: Sealed): boolean {
  try {
    const p = open(kek, check, checkAad(salt));
    const ok = p.equals(CHECK_PLAINTEXT);
    p.fill(0);
    return ok;
  } catch (err) {
    if (err instanceof AuthenticationFailed) return false;
    throw err;
  }
}

export function wrapKey(kek: Buffer, keyId: number, dataKey: Buffer): Sealed {
  return seal(kek, dataKey, dataKeyAad(keyId));
}

export function unwrapKey(kek: Buffer, keyId: number, wrapped: Sealed): Buffer {
  const k = open(kek, wrapped, dataKeyAad(keyId));
  if (k.length !== KEY_BYTES) {
    k.fill(0);
    throw new AuthenticationFailed();
  }
  return k;
}

export function sha256(data: Uint8Array | string): Buffer {
  return createHash('sha256').update(data).digest();
}
