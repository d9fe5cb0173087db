// Publisher signatures (Ed25519, node:crypto).
//
// Signed payload (UTF-8):
//   "talon-skill-signature-v1\n" + <lower-case hex SHA-256 of the .wasm> + "\n" + <canonical JSON of the manifest>
// The domain prefix keeps a Talon skill signature from being valid for anything else
// the same key signs; the hash pins the exact binary; canonical JSON pins every
// manifest field (sorted keys, no whitespace) so reformatting does not matter.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { SkillPackageError } from './errors.ts';

export const SIGNATURE_DOMAIN = 'talon-skill-signature-v1';
export const SIGNATURE_FORMAT = 'talon-skill-signature/v1';
const KEY_PREFIX = 'ed25519:';
// DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it.
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Contents of skill.sig (JSON). */
export interface SignatureFile {
  format: typeof SIGNATURE_FORMAT;
  publicKey: string;
  signature: string;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function signedPayload(wasmSha256: string, manifestCanonical: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(wasmSha256)) throw new Error('wasm hash must be 64 lower-case hex digits');
  return Buffer.from(`${SIGNATURE_DOMAIN}\n${wasmSha256}\n${manifestCanonical}`, 'utf8');
}

export function encodePublicKey(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  if (key.asymmetricKeyType !== 'ed25519' || der.length !== 44) throw new Error('publisher keys must be Ed25519');
  return KEY_PREFIX + der.subarray(12).toString('base64url');
}

/** Parses "ed25519:<base64url>"; throws SkillPackageError('signature_invalid') on anything else. */
export function decodePublicKey(text: string): KeyObject {
  const t = text.trim();
  const raw = t.startsWith(KEY_PREFIX) ? Buffer.from(t.slice(KEY_PREFIX.length), 'base64url') : Buffer.alloc(0);
  if (raw.length !== 32 || raw.toString('base64url') !== t.slice(KEY_PREFIX.length)) {
    throw new SkillPackageError(
      'signature_invalid',
      `"${t.slice(0, 60)}" is not a publisher key; expected ed25519:<43 base64url characters>`,
    );
  }
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** Canonical text form of a public key (round-trips decode/encode). */
export function normalizePublicKey(text: string): string {
  return encodePublicKey(decodePublicKey(text));
}

/** Short id of a key: first 16 hex digits of SHA-256 of the raw 32 bytes. */
export function publisherKeyId(publicKey: string): string {
  const raw = Buffer.from(normalizePublicKey(publicKey).slice(KEY_PREFIX.length), 'base64url');
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

/** The key id, or undefined when `publicKey` is not a publisher key (a record to refuse, not an error). */
export function tryPublisherKeyId(publicKey: string): string | undefined {
  try {
    return publisherKeyId(publicKey);
  } catch {
    return undefined;
  }
}

export function generatePublisherKey(): { privateKeyPem: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: encodePublicKey(publicKey) };
}

export function signSkill(privateKeyPem: string, wasmSha256: string, manifestCanonical: string): SignatureFile {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch {
    throw new SkillPackageError('signature_invalid', 'the signing key is not a PEM private key (create one with `talon skills keygen`)');
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new SkillPackageError('signature_invalid', 'the signing key must be Ed25519 (`talon skills keygen`)');
  const signature = sign(null, signedPayload(wasmSha256, manifestCanonical), key).toString('base64url');
  return { format: SIGNATURE_FORMAT, publicKey: encodePublicKey(createPublicKey(key)), signature };
}

export function verifySkillSignature(publicKey: string, signature: string, wasmSha256: string, manifestCanonical: string): boolean {
  const key = decodePublicKey(publicKey);
  const sig = Buffer.from(signature, 'base64url');
  if (sig.length !== 64) return false;
  return verify(null, signedPayload(wasmSha256, manifestCanonical), key, sig);
}

export function parseSignatureFile(text: string): SignatureFile {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new SkillPackageError('signature_invalid', 'skill.sig is not JSON; re-sign the package with `talon skills sign`');
  }
  const s = o as Partial<SignatureFile>;
  if (s?.format !== SIGNATURE_FORMAT || typeof s.publicKey !== 'string' || typeof s.signature !== 'string') {
    throw new SkillPackageError(
      'signature_invalid',
      `skill.sig must be {"format":"${SIGNATURE_FORMAT}","publicKey","signature"}; re-sign with \`talon skills sign\``,
    );
  }
  return { format: SIGNATURE_FORMAT, publicKey: normalizePublicKey(s.publicKey), signature: s.signature };
}
