// Classifies IP addresses for SSRF protection. Pure: no DNS, no sockets.
// Anything that is not plainly a public unicast address is refused, including
// IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) when
// the embedded address is not public, and Teredo (which hides its target).
import { isIPv4, isIPv6 } from 'node:net';

export type AddressVerdict = { public: true } | { public: false; reason: string };

interface V4Range {
  base: number;
  bits: number;
  reason: string;
}

function v4ToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return (((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!) >>> 0;
}

function v4Range(cidr: string, reason: string): V4Range {
  const [base, bits] = cidr.split('/') as [string, string];
  return { base: v4ToInt(base), bits: Number(bits), reason };
}

const V4_BLOCKED: readonly V4Range[] = [
  v4Range('0.0.0.0/8', 'unspecified_address'),
  v4Range('10.0.0.0/8', 'private_address'),
  v4Range('100.64.0.0/10', 'cgnat_address'),
  v4Range('127.0.0.0/8', 'loopback_address'),
  v4Range('169.254.0.0/16', 'link_local_address'),
  v4Range('172.16.0.0/12', 'private_address'),
  v4Range('192.0.0.0/24', 'reserved_address'),
  v4Range('192.0.2.0/24', 'reserved_address'),
  v4Range('192.31.196.0/24', 'reserved_address'),
  v4Range('192.52.193.0/24', 'reserved_address'),
  v4Range('192.88.99.0/24', 'reserved_address'),
  v4Range('192.168.0.0/16', 'private_address'),
  v4Range('192.175.48.0/24', 'reserved_address'),
  v4Range('198.18.0.0/15', 'reserved_address'),
  v4Range('198.51.100.0/24', 'reserved_address'),
  v4Range('203.0.113.0/24', 'reserved_address'),
  v4Range('224.0.0.0/4', 'multicast_address'),
  v4Range('240.0.0.0/4', 'reserved_address'),
];

function inV4(ip: number, r: V4Range): boolean {
  if (r.bits === 0) return true;
  const mask = (0xffffffff << (32 - r.bits)) >>> 0;
  return (ip & mask) >>> 0 === (r.base & mask) >>> 0;
}

export function classifyV4(ip: string): AddressVerdict {
  const n = v4ToInt(ip);
  for (const r of V4_BLOCKED) if (inV4(n, r)) return { public: false, reason: r.reason };
  return { public: true };
}

/** Expands an IPv6 literal (any valid spelling, optional zone, embedded IPv4) to 8 hextets. */
export function expandV6(ip: string): number[] | undefined {
  let s = ip.toLowerCase();
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    // Rewrite a trailing dotted quad as two hextets, then parse uniformly.
    if (!isIPv4(last)) return undefined;
    const n = v4ToInt(last);
    s = `${s.slice(0, lastColon + 1)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const parts = s.split('::');
  if (parts.length > 2) return undefined;
  const split = (x: string | undefined) => (x ? x.split(':') : []);
  const head = split(parts[0]);
  const rest = split(parts[1]);
  let groups: string[];
  if (parts.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...Array<string>(fill).fill('0'), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const nums = groups.map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN));
  if (nums.some((n) => Number.isNaN(n))) return undefined;
  return nums;
}

function v4FromHextets(a: number, b: number): string {
  return `${a >>> 8}.${a & 0xff}.${b >>> 8}.${b & 0xff}`;
}

function embedded(reason: string, v4: string): AddressVerdict {
  const inner = classifyV4(v4);
  return inner.public ? { public: true } : { public: false, reason: `${reason}_${inner.reason}` };
}

export function classifyV6(ip: string): AddressVerdict {
  const h = expandV6(ip);
  if (!h) return { public: false, reason: 'invalid_address' };
  const [h0, h1, h2, h3, h4, h5, h6, h7] = h as [number, number, number, number, number, number, number, number];
  const zeroPrefix = h0 === 0 && h1 === 0 && h2 === 0 && h3 === 0 && h4 === 0;
  if (zeroPrefix && h5 === 0 && h6 === 0 && h7 === 0) return { public: false, reason: 'unspecified_address' };
  if (zeroPrefix && h5 === 0 && h6 === 0 && h7 === 1) return { public: false, reason: 'loopback_address' };
  if (zeroPrefix && h5 === 0xffff) return embedded('ipv4_mapped', v4FromHextets(h6, h7));
  if (zeroPrefix && h5 === 0) return { public: false, reason: 'ipv4_compatible_address' };
  if (h0 === 0 && h1 === 0 && h2 === 0 && h3 === 0 && h4 === 0xffff && h5 === 0) return embedded('ipv4_translated', v4FromHextets(h6, h7));
  if (h0 === 0x64 && h1 === 0xff9b && h2 === 0 && h3 === 0 && h4 === 0 && h5 === 0) return embedded('nat64', v4FromHextets(h6, h7));
  if (h0 === 0x64 && h1 === 0xff9b && h2 === 1) return { public: false, reason: 'nat64_local_address' };
  if (h0 === 0x100 && h1 === 0 && h2 === 0 && h3 === 0) return { public: false, reason: 'discard_address' };
  if (h0 === 0x2001 && h1 === 0) return { public: false, reason: 'teredo_address' };
  if (h0 === 0x2001 && h1 === 0x0db8) return { public: false, reason: 'documentation_address' };
  if (h0 === 0x2001 && (h1 & 0xfff0) === 0x0010) return { public: false, reason: 'orchid_address' };
  if (h0 === 0x2001 && (h1 & 0xfff0) === 0x0020) return { public: false, reason: 'orchid_address' };
  if (h0 === 0x2001 && h1 === 0x0002 && h2 === 0) return { public: false, reason: 'benchmark_address' };
  if (h0 === 0x2001 && h1 < 0x0200) return { public: false, reason: 'reserved_address' };
  if (h0 === 0x2002) return embedded('6to4', v4FromHextets(h1, h2));
  if (h0 === 0x3fff && (h1 & 0xf000) === 0) return { public: false, reason: 'documentation_address' };
  if (h0 === 0x5f00) return { public: false, reason: 'reserved_address' };
  if ((h0 & 0xfe00) === 0xfc00) return { public: false, reason: 'unique_local_address' };
  if ((h0 & 0xffc0) === 0xfe80) return { public: false, reason: 'link_local_address' };
  if ((h0 & 0xffc0) === 0xfec0) return { public: false, reason: 'site_local_address' };
  if ((h0 & 0xff00) === 0xff00) return { public: false, reason: 'multicast_address' };
  // Only global unicast (2000::/3) is public.
  if ((h0 & 0xe000) !== 0x2000) return { public: false, reason: 'reserved_address' };
  return { public: true };
}

export function classifyAddress(ip: string): AddressVerdict {
  if (isIPv4(ip)) return classifyV4(ip);
  if (isIPv6(ip)) return classifyV6(ip);
  return { public: false, reason: 'invalid_address' };
}

/**
 * Canonical IP literal for a URL host, or undefined when the host is a name.
 * WHATWG URL parsing already turns decimal/octal/hex/short IPv4 spellings
 * (http://2130706433/, http://0x7f.1/, http://017700000001/) into dotted quads;
 * this also rejects a bracketless IPv6 host.
 */
export function ipLiteralOfHost(hostname: string): string | undefined {
  const h = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (isIPv4(h) || isIPv6(h)) return h;
  return undefined;
}

/** True for hostnames a resolver might treat as numeric although WHATWG URL did not (defence in depth). */
export function looksNumeric(hostname: string): boolean {
  return /^[0-9.]+$/.test(hostname) || /^0x[0-9a-f.x]+$/i.test(hostname);
}
