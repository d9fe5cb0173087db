// Exact matching of vault secrets from their fingerprints (see fingerprint.ts):
// every offset whose four bytes equal some form's prefix is confirmed by the
// SHA-256 of the window of each length registered under that prefix.
import { hash } from 'node:crypto';
import { FINGERPRINT_PREFIX_BYTES, MIN_SECRET_BYTES, type SecretFingerprint } from './fingerprint.ts';
import { Prefix4Index, key4 } from './prefix-index.ts';

/** Raised when the fingerprints handed to the matcher are malformed (a vault/egress version mismatch). */
export class InvalidFingerprint extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidFingerprint';
  }
}

/** Which secret and which of its forms; never the bytes. */
export interface FormRef {
  readonly name: string;
  readonly encoding: string;
}

export interface ExactMatch extends FormRef {
  readonly offset: number;
  readonly length: number;
}

/** Everything registered under one 4-byte prefix. */
export interface PrefixGroup {
  /** Distinct form lengths, ascending. */
  readonly lengths: readonly number[];
  /** base64 SHA-256 of a form -> the forms with that digest (two secrets may share a value). */
  readonly byDigest: ReadonlyMap<string, readonly FormRef[]>;
}

/**
 * Calls `visit` for each form of `group` found at `start` (longest first is not
 * guaranteed: lengths ascend). Only windows that fit in `data` are hashed.
 */
export function confirmAt(data: Uint8Array, start: number, group: PrefixGroup, visit: (ref: FormRef, length: number) => void): void {
  const room = data.length - start;
  for (const len of group.lengths) {
    if (len > room) break;
    const refs = group.byDigest.get(hash('sha256', data.subarray(start, start + len), 'base64'));
    if (refs !== undefined) for (const ref of refs) visit(ref, len);
  }
}

export class ExactMatcher {
  readonly #groups: Map<number, PrefixGroup>;
  readonly #index: Prefix4Index<PrefixGroup>;
  readonly #names: readonly string[];
  /** Longest form, in bytes (0 when empty): what a streaming redactor must hold back, plus one. */
  readonly maxLength: number;
  readonly formCount: number;
  /**
   * Some secret may contain a character JSON escapes, so text around \" \\ \n \r \t
   * escapes must be unescaped and re-scanned to find it. Known exactly when the
   * fingerprints carry json forms (fingerprintSecret: json differs from raw);
   * for fingerprints without any json form (another producer), every secret with
   * a percent form counts, since JSON-escaped characters are all percent-encoded.
   */
  readonly jsonSensitive: boolean;

  constructor(fingerprints: readonly SecretFingerprint[] = []) {
    const build = new Map<number, { lengths: Set<number>; byDigest: Map<string, FormRef[]> }>();
    let maxLength = 0;
    let formCount = 0;
    let anyJsonForm = false;
    let jsonDiffers = false;
    let anyPercentForm = false;
    const names = new Set<string>();
    for (const fp of fingerprints) {
      if (typeof fp.name !== 'string' || fp.name === '') throw new InvalidFingerprint('a secret fingerprint has no name');
      names.add(fp.name);
      const raw = fp.forms.find((f) => f.encoding === 'raw');
      for (const form of fp.forms) {
        if (form.encoding === 'percent') anyPercentForm = true;
        if (form.encoding === 'json') {
          anyJsonForm = true;
          if (!raw || !Buffer.from(raw.sha256).equals(Buffer.from(form.sha256))) jsonDiffers = true;
        }
        const what = `secret ${fp.name}, form ${form.encoding}`;
        if (form.prefix.length !== FINGERPRINT_PREFIX_BYTES)
          throw new InvalidFingerprint(`${what}: prefix has ${form.prefix.length} bytes, expected ${FINGERPRINT_PREFIX_BYTES}`);
        if (form.sha256.length !== 32) throw new InvalidFingerprint(`${what}: sha256 has ${form.sha256.length} bytes, expected 32`);
        if (!Number.isInteger(form.length) || form.length < MIN_SECRET_BYTES)
          throw new InvalidFingerprint(`${what}: length ${form.length} is below the minimum of ${MIN_SECRET_BYTES} bytes`);
        const k = key4(form.prefix, 0);
        let g = build.get(k);
        if (!g) build.set(k, (g = { lengths: new Set(), byDigest: new Map() }));
        g.lengths.add(form.length);
        const digest = Buffer.from(form.sha256.buffer, form.sha256.byteOffset, 32).toString('base64');
        const refs = g.byDigest.get(digest);
        const ref: FormRef = { name: fp.name, encoding: form.encoding };
        if (!refs) g.byDigest.set(digest, [ref]);
        else if (!refs.some((r) => r.name === ref.name && r.encoding === ref.encoding)) refs.push(ref);
        maxLength = Math.max(maxLength, form.length);
        formCount++;
      }
    }
    this.#groups = new Map();
    for (const [k, g] of build) this.#groups.set(k, { lengths: [...g.lengths].sort((a, b) => a - b), byDigest: g.byDigest });
    this.#index = new Prefix4Index(this.#groups);
    this.#names = [...names];
    this.maxLength = maxLength;
    this.formCount = formCount;
    this.jsonSensitive = anyJsonForm ? jsonDiffers : anyPercentForm;
  }

  /** Names of the secrets indexed (not their values). */
  get secretNames(): readonly string[] {
    return this.#names;
  }

  /** Prefix key -> group, for scanners that fold secrets into a combined index. */
  get groups(): ReadonlyMap<number, PrefixGroup> {
    return this.#groups;
  }

  /** Every occurrence of every form in `data`, by increasing offset (then length). Overlaps are all reported. */
  scan(data: Uint8Array): ExactMatch[] {
    const out: ExactMatch[] = [];
    this.#index.scan(data, (start, groups) => {
      for (const g of groups)
        confirmAt(data, start, g, (ref, length) => out.push({ name: ref.name, encoding: ref.encoding, offset: start, length }));
    });
    return out;
  }
}
