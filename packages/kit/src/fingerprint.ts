// Fingerprints of a secret value in every encoded form it is likely to travel in,
// so egress can recognise the value without holding it (vault.proto FormFingerprint).
// Shared by the vault (which computes them) and egress's scanner (which matches them).
//
// Self-contained on purpose (node:crypto only): the vault computes these from the
// plaintext it holds; egress only ever receives the result.
import { createHash } from 'node:crypto';

/**
 * Values shorter than this get no fingerprints. A 4-byte prefix plus the length
 * pins down such a value almost completely (its SHA-256 can be brute-forced in
 * seconds), and short values occur by chance in ordinary traffic, so matching
 * them would both weaken the secret and refuse innocent requests.
 */
export const MIN_SECRET_BYTES = 8;

/** Bytes of each encoded form kept in clear as the match anchor. */
export const FINGERPRINT_PREFIX_BYTES = 4;

/** Shortest value given a reversed form (see FORM_ENCODINGS). */
export const REVERSED_MIN_BYTES = 16;

/**
 * Encodings of a value that egress matches exactly:
 * - raw: the bytes themselves;
 * - base64 / base64url: without padding (a padded occurrence contains the unpadded form, so both match);
 * - hex / hex_upper;
 * - percent: encodeURIComponent's set, upper-case escapes, every non-ASCII byte escaped;
 * - json: the body of a JSON string literal (quotes, backslashes and control characters escaped);
 * - html: `&`, `<`, `>`, `"` and `'` escaped as `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;`
 *   (the scanner decodes other character references itself, but not these five, which fill
 *   ordinary HTML);
 * - reversed: the value written backwards (by character when it is UTF-8), for values of
 *   REVERSED_MIN_BYTES or more: its anchor is the value's last four bytes, which with the raw
 *   form's first four would leave too little of a shorter value hidden;
 * - rot13: letters rotated by 13 (its anchor tells nothing the raw form's does not).
 * A form identical to one already listed is left out, except json: every UTF-8
 * value gets one, so that a json form equal to raw tells the scanner the value
 * holds nothing JSON escapes (it then skips re-scanning around \n \" escapes).
 */
export const FORM_ENCODINGS = ['raw', 'base64', 'base64url', 'hex', 'hex_upper', 'percent', 'json', 'html', 'reversed', 'rot13'] as const;
export type FormEncoding = (typeof FORM_ENCODINGS)[number];

/** Structurally the generated proto's FormFingerprint (Buffer is a Uint8Array). */
export interface FormFingerprint {
  encoding: string;
  length: number;
  prefix: Uint8Array;
  sha256: Uint8Array;
}

/** Structurally the generated proto's SecretFingerprint. */
export interface SecretFingerprint {
  name: string;
  forms: FormFingerprint[];
}

/** What fingerprintSecret returns: Buffers, so it can be put straight into the proto message (whose bytes fields are Buffers). */
export interface SecretFingerprintOut extends SecretFingerprint {
  forms: Array<FormFingerprint & { prefix: Buffer; sha256: Buffer }>;
}

const HEX = '0123456789ABCDEF';

function isUnreservedForUriComponent(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x5f || // _
    b === 0x2e || // .
    b === 0x21 || // !
    b === 0x7e || // ~
    b === 0x2a || // *
    b === 0x27 || // '
    b === 0x28 || // (
    b === 0x29 // )
  );
}

function percentForm(value: Buffer): Buffer {
  let out = '';
  for (const b of value) out += isUnreservedForUriComponent(b) ? String.fromCharCode(b) : `%${HEX[b >> 4]}${HEX[b & 15]}`;
  return Buffer.from(out, 'latin1');
}

function jsonForm(value: Buffer): Buffer | null {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(value);
  } catch {
    return null; // not text: it cannot appear inside a JSON string as itself
  }
  return Buffer.from(JSON.stringify(text).slice(1, -1), 'utf8');
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function htmlForm(value: Buffer): Buffer {
  return Buffer.from(
    value.toString('latin1').replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!),
    'latin1',
  );
}

function reversedForm(value: Buffer): Buffer | null {
  if (value.length < REVERSED_MIN_BYTES) return null;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(value);
  } catch {
    return Buffer.from(value).reverse(); // not text: bytes backwards
  }
  return Buffer.from([...text].reverse().join(''), 'utf8');
}

function rot13Form(value: Buffer): Buffer {
  const out = Buffer.from(value);
  for (let i = 0; i < out.length; i++) {
    const b = out[i]!;
    if (b >= 0x41 && b <= 0x5a) out[i] = 0x41 + ((b - 0x41 + 13) % 26);
    else if (b >= 0x61 && b <= 0x7a) out[i] = 0x61 + ((b - 0x61 + 13) % 26);
  }
  return out;
}

/** Every distinct encoded form of `value`, in FORM_ENCODINGS order. Holds plaintext: for the vault and tests only. */
export function encodedForms(value: Uint8Array): Array<{ encoding: FormEncoding; bytes: Buffer }> {
  const raw = Buffer.from(value);
  const candidates: Array<[FormEncoding, Buffer | null]> = [
    ['raw', raw],
    ['base64', Buffer.from(raw.toString('base64').replace(/=+$/, ''), 'latin1')],
    ['base64url', Buffer.from(raw.toString('base64url'), 'latin1')],
    ['hex', Buffer.from(raw.toString('hex'), 'latin1')],
    ['hex_upper', Buffer.from(raw.toString('hex').toUpperCase(), 'latin1')],
    ['percent', percentForm(raw)],
    ['json', jsonForm(raw)],
    ['html', htmlForm(raw)],
    ['reversed', reversedForm(raw)],
    ['rot13', rot13Form(raw)],
  ];
  const out: Array<{ encoding: FormEncoding; bytes: Buffer }> = [];
  for (const [encoding, bytes] of candidates) {
    if (bytes === null || (encoding !== 'json' && out.some((f) => f.bytes.equals(bytes)))) continue;
    out.push({ encoding, bytes });
  }
  return out;
}

/**
 * Fingerprints of every encoded form of one secret value. Values shorter than
 * MIN_SECRET_BYTES yield no forms (see there). The encoded copies are zeroed once
 * hashed (intermediate JS strings cannot be, and are left to the GC).
 */
export function fingerprintSecret(name: string, value: Uint8Array): SecretFingerprintOut {
  if (value.length < MIN_SECRET_BYTES) return { name, forms: [] };
  const forms = encodedForms(value);
  const out = forms.map(({ encoding, bytes }) => ({
    encoding,
    length: bytes.length,
    prefix: Buffer.from(bytes.subarray(0, FINGERPRINT_PREFIX_BYTES)),
    sha256: createHash('sha256').update(bytes).digest(),
  }));
  for (const f of forms) f.bytes.fill(0);
  return { name, forms: out };
}
