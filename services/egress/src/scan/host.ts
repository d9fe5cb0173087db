// Leak scanning of a destination host name, before any DNS lookup: a name is a
// channel of its own (`6768705f...6162.attacker.example` resolves through the
// attacker's name server, which logs it). Pure and synchronous.
//
// The name as sent is scanned, then its labels decoded as hex, base32 and
// base64url: each label alone, and labels concatenated, since a label holds at
// most 63 characters and a hex-encoded token needs more. Concatenated are: each
// maximal run of consecutive labels valid in the encoding (data sits in front of
// the attacker's domain, or after a `www.`), all but the last two and all but the
// last (the registrable domain carries no data in the common case, and its bytes
// glued on could spoil a rule's right-boundary check), and all of them (data may
// sit anywhere; a name is at most 253 bytes, so every variant costs next to nothing).
import { isIP } from 'node:net';
import { base32Decode } from './decode.ts';
import type { LeakScanner, ScanFinding } from './scanner.ts';

/** Field reported with host findings (location 'url'). */
export const HOST_FIELD = 'host';

/** Shortest label (or concatenation) decoded: shorter ones carry nothing worth finding. */
const MIN_ENCODED = 8;

const HEX = /^[0-9a-f]+$/i;
const BASE32 = /^[a-z2-7]+$/i;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

type HostEncoding = 'hex' | 'base32' | 'base64url';

const ENCODINGS: ReadonlyArray<{ name: HostEncoding; valid: RegExp; decode: (s: string) => Buffer }> = [
  { name: 'hex', valid: HEX, decode: (s) => Buffer.from(s.length % 2 === 0 ? s : s.slice(0, -1), 'hex') },
  // DNS is case-insensitive and some clients lower-case names: base32 survives that.
  { name: 'base32', valid: BASE32, decode: (s) => base32Decode(s.toUpperCase()) },
  { name: 'base64url', valid: BASE64URL, decode: (s) => Buffer.from(s, 'base64url') },
];

/**
 * Scans a destination host name as sent (keep its case when the caller has it:
 * base64url depends on it). Findings are reported at location 'url', field
 * 'host', with the label decoding first in the chain (e.g. 'hex', 'base32>gzip').
 * An IP literal is scanned as it is.
 */
export function scanHost(scanner: LeakScanner, host: string): ScanFinding[] {
  let name = host.trim();
  if (name.startsWith('[') && name.endsWith(']')) name = name.slice(1, -1);
  name = name.replace(/\.+$/, '');
  const out: ScanFinding[] = [];
  const seen = new Set<string>();
  const add = (fs: readonly ScanFinding[], encoding?: HostEncoding) => {
    for (const f of fs) {
      const key = `${f.kind}\0${f.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({
        ...f,
        field: HOST_FIELD,
        encoding: encoding === undefined ? f.encoding : f.encoding === 'raw' ? encoding : `${encoding}>${f.encoding}`,
      });
    }
  };
  add(scanner.scanText(name, 'url', HOST_FIELD));
  if (name === '' || isIP(name) !== 0) return out;
  const labels = name.split('.');
  for (const enc of ENCODINGS) {
    const candidates = new Set<string>();
    for (const label of labels) if (label.length >= MIN_ENCODED && enc.valid.test(label)) candidates.add(label);
    // Every maximal run of consecutive labels valid in the encoding, wherever it sits.
    for (let i = 0; i < labels.length;) {
      let j = i;
      while (j < labels.length && enc.valid.test(labels[j]!)) j++;
      const joined = labels.slice(i, j).join('');
      if (joined.length >= MIN_ENCODED) candidates.add(joined);
      i = Math.max(j, i + 1);
    }
    for (const count of [labels.length - 2, labels.length - 1, labels.length]) {
      const joined = labels.slice(0, Math.max(0, count)).join('');
      if (joined.length >= MIN_ENCODED && enc.valid.test(joined)) candidates.add(joined);
    }
    if (candidates.size === 0) continue;
    const decoded = Buffer.concat([...candidates].flatMap((c, i) => (i === 0 ? [enc.decode(c)] : [NEWLINE, enc.decode(c)])));
    add(scanner.scanText(decoded, 'url', HOST_FIELD), enc.name);
  }
  return out;
}

const NEWLINE = Buffer.from('\n');
