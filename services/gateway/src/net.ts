// Who is the client, and may a browser page from this Origin talk to us? Pure.
//
// The socket address is the client unless the socket belongs to a configured
// trusted proxy; only then is X-Forwarded-For read, from the right, skipping
// further trusted proxies. Loopback gets no special trust: a process on the same
// machine (or a proxy there that was not configured) is just another client.
import { isIP } from 'node:net';

/** Parses an IPv4 or IPv6 address into 16 bytes (IPv4 as IPv4-mapped IPv6); undefined when invalid. */
export function parseIp(raw: string): Uint8Array | undefined {
  let s = raw.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const kind = isIP(s);
  if (kind === 4) {
    const out = new Uint8Array(16);
    out[10] = 0xff;
    out[11] = 0xff;
    s.split('.').forEach((p, i) => (out[12 + i] = Number(p)));
    return out;
  }
  if (kind !== 6) return undefined;
  // Expand an embedded IPv4 tail (::ffff:1.2.3.4) into two hex groups first.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    s = s.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

function isMappedV4(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Canonical text of an address for rate limiting and logs: IPv4-mapped IPv6
 * folds to dotted IPv4 (::ffff:127.0.0.1 and 127.0.0.1 are one client), IPv6
 * is compressed lower-case. Invalid input is returned as "invalid".
 */
export function canonicalIp(raw: string): string {
  const b = parseIp(raw);
  if (!b) return 'invalid';
  if (isMappedV4(b)) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // Compress the longest run of zero groups.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/**
 * Rate-limit key of a client: IPv4 addresses as they are, IPv6 by /64 (one
 * host usually owns a whole /64, so per-address limits would be trivial to dodge).
 */
export function rateKey(canonical: string): string {
  if (!canonical.includes(':')) return canonical;
  const b = parseIp(canonical);
  if (!b) return canonical;
  const g: string[] = [];
  for (let i = 0; i < 8; i += 2) g.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return `${g.join(':')}::/64`;
}

export interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

export function parseCidr(raw: string): Cidr | undefined {
  const [addr, len] = raw.trim().split('/');
  const bytes = parseIp(addr ?? '');
  if (!bytes) return undefined;
  const v4 = isMappedV4(bytes) && !addr!.includes(':');
  const max = v4 ? 32 : 128;
  const n = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(n >= 0 && n <= max)) return undefined;
  return { bytes, bits: v4 ? n + 96 : n };
}

export function isIpOrCidr(v: string): boolean {
  return parseCidr(v) !== undefined;
}

export function cidrContains(c: Cidr, ip: Uint8Array): boolean {
  let bits = c.bits;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.bytes[i]! & mask) !== (ip[i]! & mask)) return false;
  }
  return true;
}

export class TrustedProxies {
  private readonly ranges: Cidr[];
  constructor(list: readonly string[]) {
    this.ranges = list.map((v) => {
      const c = parseCidr(v);
      if (!c) throw new Error(`not an IP or CIDR: ${v}`);
      return c;
    });
  }

  trusts(ip: string): boolean {
    const b = parseIp(ip);
    return b !== undefined && this.ranges.some((c) => cidrContains(c, b));
  }

  /**
   * The client's canonical address. X-Forwarded-For is consulted only when the
   * socket peer is a trusted proxy; its entries are walked from the right and the
   * first one that is not itself a trusted proxy is the client. A malformed entry
   * stops the walk at the last good hop (never lets a header choose freely).
   */
  clientAddress(socketAddress: string | undefined, forwardedFor: string | string[] | undefined): string {
    const peer = canonicalIp(socketAddress ?? '');
    if (this.ranges.length === 0 || !this.trusts(peer) || forwardedFor === undefined) return peer;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = canonicalIp(hops[i]!);
      if (hop === 'invalid') break;
      client = hop;
      if (!this.trusts(hop)) break;
    }
    return client;
  }
}

export type OriginVerdict = 'allowed' | 'missing' | 'null' | 'foreign';

/** Judges an Origin header against the allowlist (exact scheme://host:port match, case-insensitive host). */
export function checkOrigin(origin: string | undefined, allowed: ReadonlySet<string>): OriginVerdict {
  if (origin === undefined || origin === '') return 'missing';
  if (origin === 'null') return 'null';
  let normalized: string;
  try {
    const u = new URL(origin);
    normalized = u.origin;
  } catch {
    return 'foreign';
  }
  return allowed.has(normalized) ? 'allowed' : 'foreign';
}

/** Normalizes configured origins (URL.origin form: lower-case host, default port dropped). */
export function originSet(origins: readonly string[]): Set<string> {
  return new Set(origins.map((o) => new URL(o).origin));
}
