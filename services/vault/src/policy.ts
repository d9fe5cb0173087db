// Secret policy: which hosts a value may travel to, in which part of the request,
// for which principals, until when. Pure; validated once when a secret is set and
// checked on every Resolve.
//
// Host rules (each entry of `hosts`):
//   api.example.com          exactly that name, port 443
//   api.example.com:8443     exactly that name and port
//   *.example.com            any subdomain of example.com (not example.com itself), port 443
//   203.0.113.7[:port]       that IPv4 address;  [2001:db8::1][:port]  that IPv6 address
// A rule without a port means 443 only: credentials go over TLS unless the operator
// names another port. Names are compared case-insensitively, without a trailing
// dot, after the WHATWG URL host parser (IDN to punycode, IPv4 shorthand expanded),
// so a request host cannot sneak past a rule through an alternative spelling.
import { isSkillPrincipal, parseMcpPrincipal } from '@talon/kit/contracts';
import { PLACEMENT_BY_NAME, PLACEMENT_NAMES, type PlacementName } from '@talon/kit/placements';
import { Placement, type SecretPolicy } from '@talon/proto';

export const DEFAULT_PORT = 443;

/** A policy as stored (jsonb) and bound into the ciphertext's associated data. */
export interface StoredPolicy {
  hosts: string[];
  placement: PlacementName;
  /** Header name (lower case) for `header`, parameter name for `query`, else empty. */
  field: string;
  principals: string[];
  /** Unix ms; 0 = never expires. */
  expiresAtMs: number;
  /** A webhook verification key: checked inside the vault, never sent anywhere. */
  verifyOnly?: boolean;
}

export class PolicyInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyInvalid';
  }
}

export interface HostPattern {
  /** `exact`: the host itself; `suffix`: any name ending in `.host`. */
  kind: 'exact' | 'suffix';
  host: string;
  port: number;
  ip: boolean;
}

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

/**
 * Canonical form of a host name or IP literal, or undefined when it is not one.
 * IPv6 comes back without brackets.
 */
export function canonicalHost(raw: string): string | undefined {
  let h = raw.trim();
  if (h === '' || h.length > 255 || /[\s/\\@?#%]/.test(h)) return undefined;
  if (!h.startsWith('[') && h.includes(':')) h = `[${h}]`; // bare IPv6
  let parsed: string;
  try {
    parsed = new URL(`http://${h}/`).hostname;
  } catch {
    return undefined;
  }
  if (parsed.startsWith('[')) return parsed.slice(1, -1);
  if (parsed.endsWith('.')) parsed = parsed.slice(0, -1);
  if (IPV4.test(parsed)) return parsed;
  return HOSTNAME.test(parsed) ? parsed : undefined;
}

function isIp(host: string): boolean {
  return host.includes(':') || IPV4.test(host);
}

function parsePort(s: string, entry: string): number {
  if (!/^\d{1,5}$/.test(s) || Number(s) < 1 || Number(s) > 65535)
    throw new PolicyInvalid(`host ${JSON.stringify(entry)}: port must be 1-65535`);
  return Number(s);
}

export function parseHostPattern(entry: string): HostPattern {
  const e = entry.trim();
  if (e === '') throw new PolicyInvalid('a host entry is empty');
  let hostPart = e;
  let port = DEFAULT_PORT;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(e);
  if (v6) {
    hostPart = v6[1]!;
    if (v6[2] !== undefined) port = parsePort(v6[2], e);
  } else if ((e.match(/:/g) ?? []).length === 1) {
    const i = e.lastIndexOf(':');
    hostPart = e.slice(0, i);
    port = parsePort(e.slice(i + 1), e);
  }
  let kind: HostPattern['kind'] = 'exact';
  if (hostPart.startsWith('*.')) {
    kind = 'suffix';
    hostPart = hostPart.slice(2);
  }
  if (hostPart.includes('*')) throw new PolicyInvalid(`host ${JSON.stringify(e)}: a wildcard is allowed only as a leading "*." label`);
  const host = canonicalHost(hostPart);
  if (!host) throw new PolicyInvalid(`host ${JSON.stringify(e)} is not a host name or IP address`);
  const ip = isIp(host);
  if (kind === 'suffix' && (ip || !host.includes('.'))) {
    throw new PolicyInvalid(
      `host ${JSON.stringify(e)}: "*." needs a domain of at least two labels (e.g. *.example.com), not an IP or a top-level domain`,
    );
  }
  return { kind, host, port, ip };
}

export function formatHostPattern(p: HostPattern): string {
  const h = p.host.includes(':') ? `[${p.host}]` : p.host;
  const base = p.kind === 'suffix' ? `*.${h}` : h;
  return p.port === DEFAULT_PORT && !p.host.includes(':') ? base : `${base}:${p.port}`;
}

export function hostPatternMatches(p: HostPattern, host: string, port: number): boolean {
  if (port !== p.port) return false;
  if (p.kind === 'exact') return host === p.host;
  // "*.example.com" covers "a.example.com" and "a.b.example.com", never "example.com"
  // itself, nor "evil-example.com" (the dot is part of the suffix), nor an IP literal.
  return !isIp(host) && host.length > p.host.length + 1 && host.endsWith(`.${p.host}`);
}

const SERVICE_PRINCIPALS = ['orchestrator', 'gateway', 'sandbox'];

export function validPrincipal(p: string): boolean {
  return SERVICE_PRINCIPALS.includes(p) || isSkillPrincipal(p) || parseMcpPrincipal(p) !== undefined;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const QUERY_NAME = /^[A-Za-z0-9._~-]{1,128}$/;

/** Validates and normalises a policy from SetSecret. Defaults: bearer, principal orchestrator. */
export function validatePolicy(p: SecretPolicy | undefined, nowMs: number): StoredPolicy {
  if (!p) throw new PolicyInvalid('policy is required (at least one host)');
  if (p.verifyOnly) return validateVerifyPolicy(p, nowMs);
  if (p.hosts.length === 0) throw new PolicyInvalid('policy.hosts must name at least one host the secret may be sent to');
  if (p.hosts.length > 64) throw new PolicyInvalid('policy.hosts may list at most 64 hosts');
  const hosts = [...new Set(p.hosts.map((h) => formatHostPattern(parseHostPattern(h))))];
  const placementEnum = p.placement === Placement.PLACEMENT_UNSPECIFIED ? Placement.PLACEMENT_BEARER : p.placement;
  const placement = PLACEMENT_NAMES[placementEnum as keyof typeof PLACEMENT_NAMES] as PlacementName | undefined;
  if (!placement) throw new PolicyInvalid(`policy.placement ${String(p.placement)} is not a known placement`);
  let field = p.field.trim();
  if (placement === 'header') {
    if (!HEADER_NAME.test(field)) throw new PolicyInvalid('a header placement needs policy.field, a valid HTTP header name');
    field = field.toLowerCase();
  } else if (placement === 'query') {
    if (!QUERY_NAME.test(field))
      throw new PolicyInvalid('a query placement needs policy.field, a parameter name of letters, digits and ._~-');
  } else if (field !== '') {
    throw new PolicyInvalid(`policy.field is used only by header and query placements, not ${placement}`);
  }
  const principals = [...new Set((p.principals.length === 0 ? ['orchestrator'] : p.principals).map((s) => s.trim()))];
  for (const pr of principals) {
    if (!validPrincipal(pr)) {
      throw new PolicyInvalid(
        `principal ${JSON.stringify(pr.slice(0, 80))} is neither a service that makes outbound calls (${SERVICE_PRINCIPALS.join(', ')}) nor a skill id like skill:name@1.0.0, nor an MCP server like mcp:name`,
      );
    }
  }
  const expiresAtMs = p.expiresAtMs;
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0)
    throw new PolicyInvalid('policy.expires_at_ms must be a Unix time in ms, or 0');
  if (expiresAtMs !== 0 && expiresAtMs <= nowMs) throw new PolicyInvalid('policy.expires_at_ms is in the past');
  return { hosts, placement, field, principals, expiresAtMs };
}

/** A verification key: no hosts, no placement; used only by principals that check webhooks (default gateway). */
function validateVerifyPolicy(p: SecretPolicy, nowMs: number): StoredPolicy {
  if (p.hosts.length > 0) throw new PolicyInvalid('a verification key is bound to no host: it never leaves the vault');
  if (p.field.trim() !== '') throw new PolicyInvalid('a verification key has no placement field');
  const principals = [...new Set((p.principals.length === 0 ? ['gateway'] : p.principals).map((s) => s.trim()))];
  for (const pr of principals)
    if (!validPrincipal(pr))
      throw new PolicyInvalid(`principal ${JSON.stringify(pr.slice(0, 80))} is not a Talon service, skill id or MCP server (mcp:name)`);
  const expiresAtMs = p.expiresAtMs;
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0)
    throw new PolicyInvalid('policy.expires_at_ms must be a Unix time in ms, or 0');
  if (expiresAtMs !== 0 && expiresAtMs <= nowMs) throw new PolicyInvalid('policy.expires_at_ms is in the past');
  return { hosts: [], placement: 'bearer', field: '', principals, expiresAtMs, verifyOnly: true };
}

/** Reads a stored policy back (jsonb); throws if the row was mangled. */
export function storedPolicy(v: unknown): StoredPolicy {
  const o = v as Partial<StoredPolicy> | null;
  if (
    !o ||
    !Array.isArray(o.hosts) ||
    !Array.isArray(o.principals) ||
    typeof o.placement !== 'string' ||
    !Object.hasOwn(PLACEMENT_BY_NAME, o.placement) ||
    typeof o.field !== 'string' ||
    typeof o.expiresAtMs !== 'number'
  ) {
    throw new PolicyInvalid('stored policy is malformed');
  }
  return {
    hosts: o.hosts.map(String),
    placement: o.placement as PlacementName,
    field: o.field,
    principals: o.principals.map(String),
    expiresAtMs: o.expiresAtMs,
    ...(o.verifyOnly === true ? { verifyOnly: true } : {}),
  };
}

/** The exact bytes bound into a secret's associated data; key order fixed here, not by jsonb. */
export function canonicalPolicy(p: StoredPolicy): string {
  // The verification flag is appended only when set, so injection policies bind as before.
  return JSON.stringify(
    p.verifyOnly
      ? [p.hosts, p.placement, p.field, p.principals, p.expiresAtMs, 'verify_only']
      : [p.hosts, p.placement, p.field, p.principals, p.expiresAtMs],
  );
}

export function toProtoPolicy(p: StoredPolicy): SecretPolicy {
  return {
    hosts: [...p.hosts],
    placement: PLACEMENT_BY_NAME[p.placement],
    field: p.field,
    principals: [...p.principals],
    expiresAtMs: p.expiresAtMs,
    verifyOnly: p.verifyOnly === true,
  };
}

export type DenyReason = 'host_not_bound' | 'principal_not_allowed' | 'placement_mismatch' | 'secret_expired' | 'verify_only';

export type Decision = { allowed: true } | { allowed: false; reason: DenyReason; message: string };

export interface ResolveContext {
  principal: string;
  host: string;
  port: number;
  placement: Placement;
  field: string;
}

/**
 * Checks one outbound use of a secret. The request host must already be canonical
 * (see canonicalHost). Order: expiry, principal, host and port, placement.
 */
export function decide(name: string, p: StoredPolicy, req: ResolveContext, nowMs: number): Decision {
  if (p.expiresAtMs !== 0 && nowMs >= p.expiresAtMs) {
    return { allowed: false, reason: 'secret_expired', message: `secret ${name} expired at ${new Date(p.expiresAtMs).toISOString()}` };
  }
  if (!p.principals.includes(req.principal)) {
    return { allowed: false, reason: 'principal_not_allowed', message: `principal ${req.principal} may not use secret ${name}` };
  }
  if (p.verifyOnly) {
    return { allowed: false, reason: 'verify_only', message: `secret ${name} is a verification key; it is never sent anywhere` };
  }
  const patterns = p.hosts.map(parseHostPattern);
  if (!patterns.some((hp) => hostPatternMatches(hp, req.host, req.port))) {
    const portOnly = patterns.some((hp) => hostPatternMatches(hp, req.host, hp.port));
    return {
      allowed: false,
      reason: 'host_not_bound',
      message: portOnly
        ? `secret ${name} is bound to ${req.host} on another port, not ${req.port} (a host without :port means 443)`
        : `secret ${name} is not bound to host ${req.host}`,
    };
  }
  const want = PLACEMENT_BY_NAME[p.placement];
  const fieldOk = p.placement === 'header' ? req.field.toLowerCase() === p.field : p.placement === 'query' ? req.field === p.field : true;
  if (req.placement !== want || !fieldOk) {
    const where = p.placement === 'header' || p.placement === 'query' ? `${p.placement} ${p.field}` : p.placement;
    return { allowed: false, reason: 'placement_mismatch', message: `secret ${name} may be placed only as ${where}` };
  }
  return { allowed: true };
}
