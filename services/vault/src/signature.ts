// Webhook signature checks done inside the vault, so the edge can verify a
// platform's request without ever holding the key. Pure; constant-time compares.
// The one place a WebhookScheme (proto/talon/common/v1) is given its meaning:
// egress relays the gateway's scheme to the vault as it is.
import { createHmac, createPublicKey, timingSafeEqual, verify as verifySig, createHash } from 'node:crypto';
import { WebhookScheme, webhookSchemeToJSON } from '@talon/proto';

export const SIGNATURE_SCHEMES = [
  WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX,
  WebhookScheme.WEBHOOK_SCHEME_TOKEN,
  WebhookScheme.WEBHOOK_SCHEME_ED25519,
] as const;
export type SignatureScheme = (typeof SIGNATURE_SCHEMES)[number];

export function isSignatureScheme(s: WebhookScheme): s is SignatureScheme {
  return (SIGNATURE_SCHEMES as readonly WebhookScheme[]).includes(s);
}

/** For error messages: the schemes this vault checks, by their proto names. */
export const SIGNATURE_SCHEME_NAMES = SIGNATURE_SCHEMES.map(webhookSchemeToJSON);

function equalConstantTime(a: Buffer, b: Buffer): boolean {
  // Hash both sides so lengths never leak through timing.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** DER SubjectPublicKeyInfo prefix for a raw 32-byte Ed25519 public key. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * `key` is the stored secret: the HMAC key, the shared token, or the hex Ed25519
 * public key (as Discord shows it). `signature` is what the platform sent.
 */
export function checkSignature(scheme: SignatureScheme, key: Buffer, message: Uint8Array, signature: string): boolean {
  switch (scheme) {
    case WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX: {
      const expected = createHmac('sha256', key).update(message).digest();
      if (!/^[0-9a-fA-F]{64}$/.test(signature)) return false;
      return equalConstantTime(expected, Buffer.from(signature, 'hex'));
    }
    case WebhookScheme.WEBHOOK_SCHEME_TOKEN:
      return equalConstantTime(key, Buffer.from(signature, 'utf8'));
    case WebhookScheme.WEBHOOK_SCHEME_ED25519: {
      const raw = /^[0-9a-fA-F]{64}$/.test(key.toString('utf8').trim()) ? Buffer.from(key.toString('utf8').trim(), 'hex') : key;
      if (raw.length !== 32 || !/^[0-9a-fA-F]{128}$/.test(signature)) return false;
      try {
        const pub = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
        return verifySig(null, message, pub, Buffer.from(signature, 'hex'));
      } catch {
        return false;
      }
    }
  }
}
