// The rules of an MCP server record (talon_mcp), pure and shared: the CLI checks a
// record with them before it writes it, the orchestrator decides with them which
// tools to offer (and re-checks a tool before it calls it), egress derives the
// `mcp:<name>` allowlist and secret names from them.
//
// Tool-poisoning defence: an approval pins each tool to a hash of what the operator
// was shown (name, description, input schema). A tool whose hash differs from its
// approved one is `changed` and is not offered, nor called, until approved again.
import { createHash } from 'node:crypto';
import { isMcpServerName, MCP_SERVER_NAME_RULE, PLACEHOLDER_PATTERN, PLACEHOLDER_START } from '@talon/kit/contracts';
import type { McpApprovedTool, McpHeader, McpServer } from '@talon/proto';

/** A record that breaks a rule; the message says what to do instead. */
export class McpRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'McpRuleError';
  }
}

export const MCP_TRANSPORTS = ['streamable-http', 'sse'] as const;
export type McpTransport = (typeof MCP_TRANSPORTS)[number];

export function checkServerName(name: string): string {
  if (!isMcpServerName(name))
    throw new McpRuleError(`MCP server name ${JSON.stringify(name.slice(0, 40))} must be ${MCP_SERVER_NAME_RULE}`);
  return name;
}

export function checkTransport(t: string): McpTransport {
  const v = t === '' ? 'streamable-http' : t;
  if (!(MCP_TRANSPORTS as readonly string[]).includes(v))
    throw new McpRuleError(`--transport must be ${MCP_TRANSPORTS.join(' or ')} (got ${JSON.stringify(t.slice(0, 40))})`);
  return v as McpTransport;
}

/** A remote server's URL: http(s), no credentials in it (they belong in a header placeholder). */
export function checkServerUrl(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new McpRuleError(
      `--url ${JSON.stringify(raw.slice(0, 80))} is not a URL; give the server's endpoint, e.g. https://mcp.example.com/mcp`,
    );
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new McpRuleError(
      `--url must be http(s): only remote MCP servers are supported. Local (stdio) servers are refused: Talon has no confinement for them equal to the sandbox's`,
    );
  }
  if (u.username || u.password)
    throw new McpRuleError('--url must not carry user:password@; store the credential in the vault and pass it with --header');
  if (PLACEHOLDER_START.test(decodeURIComponent(u.href)))
    throw new McpRuleError('--url must not carry a secret placeholder; pass the credential with --header instead');
  if (u.hash) throw new McpRuleError('--url must not have a #fragment');
  return u;
}

/** `host:port` of a URL (the scheme's default port when none is written): one allowlist entry. */
export function hostEntry(u: URL): string {
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  return `${u.hostname.toLowerCase()}:${port}`;
}

/** Parses one allowlist entry `host:port` (IPv6 in brackets). */
export function parseHostEntry(entry: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  const host = m[1]!.toLowerCase();
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
/** Headers the transport, egress or Talon itself set: an operator header may not replace them. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'content-type',
  'accept',
  'transfer-encoding',
  'te',
  'upgrade',
  'keep-alive',
  'trailer',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
]);
/** Header names that carry credentials: their value must be a placeholder (optionally after a scheme word). */
const SENSITIVE_NAME = /^(authorization|cookie)$|token|secret|key|auth|pass|session|credential|signature/i;
/** Shapes of well-known credentials, and long random-looking strings. */
const CREDENTIAL_SHAPES = [
  /\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}/,
  /\bgh[pousr]_[A-Za-z0-9]{16,}/,
  /\bgithub_pat_[A-Za-z0-9_]{16,}/,
  /\bxox[abposr]-[A-Za-z0-9-]{8,}/,
  /\bAKIA[0-9A-Z]{12,}/,
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/,
  /\btalon_pat_[0-9a-f]{16,}/,
];

function randomLooking(s: string): boolean {
  for (const w of s.split(/[\s,;]+/)) {
    if (w.length < 24 || !/^[A-Za-z0-9+/=_.~-]+$/.test(w)) continue;
    if (/[a-z]/.test(w) && /[A-Z]/.test(w) && /[0-9]/.test(w)) return true;
    if (/^[0-9a-f]{32,}$/i.test(w)) return true;
  }
  return false;
}

function storeInVault(name: string): string {
  const auth = name.toLowerCase() === 'authorization';
  return (
    `header ${name} looks like it carries a credential in plain text: store it in the vault instead ` +
    `(\`talon secrets set NAME --host <the server's host> ${auth ? '--bearer' : `--header ${name}`} --principal mcp:<server>\`, value on stdin) ` +
    `and pass the header as '${name}: ${auth ? 'Bearer ' : ''}{{secret:NAME}}'`
  );
}

/** Checks one header of a record: a settable name, and no credential but as a `{{secret:NAME}}` placeholder. */
export function checkHeader(h: McpHeader): McpHeader {
  const name = h.name.trim();
  const value = h.value.trim();
  if (!HEADER_NAME.test(name)) throw new McpRuleError(`header name ${JSON.stringify(name.slice(0, 40))} is not a valid HTTP header name`);
  const lower = name.toLowerCase();
  if (RESERVED_HEADERS.has(lower) || lower.startsWith('x-talon-') || lower.startsWith('proxy-'))
    throw new McpRuleError(`header ${name} is set by Talon or the MCP transport and cannot be configured`);
  if (/[\r\n\0]/.test(value)) throw new McpRuleError(`header ${name}: the value must be one line`);
  const literal = value.replace(PLACEHOLDER_PATTERN, '');
  if (PLACEHOLDER_START.test(literal))
    throw new McpRuleError(`header ${name}: malformed placeholder; write {{secret:NAME}} with NAME of a-z, 0-9 and _`);
  const placeholders = literal !== value;
  if (SENSITIVE_NAME.test(name)) {
    // Only a scheme word may stand beside the placeholder (Bearer {{secret:X}}).
    if (!placeholders || !/^([A-Za-z][A-Za-z0-9-]{0,31}\s*)?$/.test(literal.trim())) throw new McpRuleError(storeInVault(name));
  } else if (CREDENTIAL_SHAPES.some((r) => r.test(literal)) || randomLooking(literal)) {
    throw new McpRuleError(storeInVault(name));
  }
  return { name, value };
}

/** Parses `--header 'Name: value'` and checks it. */
export function parseHeaderOption(option: string): McpHeader {
  const colon = option.indexOf(':');
  if (colon <= 0) throw new McpRuleError(`--header ${JSON.stringify(option.slice(0, 40))} must be 'Name: value'`);
  return checkHeader({ name: option.slice(0, colon), value: option.slice(colon + 1) });
}

/** Secret names a record's headers use: the only ones egress fills for `mcp:<name>`. */
export function secretNamesOf(headers: readonly McpHeader[]): string[] {
  const names = new Set<string>();
  for (const h of headers) for (const m of h.value.matchAll(PLACEHOLDER_PATTERN)) names.add(m[1]!);
  return [...names].sort();
}

/** Checks a whole record before it is written. */
export function checkServer(s: McpServer): McpServer {
  checkServerName(s.name);
  checkServerUrl(s.url);
  checkTransport(s.transport);
  const seen = new Set<string>();
  for (const h of s.headers) {
    checkHeader(h);
    const k = h.name.toLowerCase();
    if (seen.has(k)) throw new McpRuleError(`header ${h.name} is given twice`);
    seen.add(k);
  }
  if (s.hosts.length === 0 || s.hosts.some((h) => !parseHostEntry(h))) throw new McpRuleError('hosts must be host:port entries');
  return s;
}

// ---- tools: hashes, names, approvals ----

/** A tool as a server lists it (MCP `tools/list`). */
export interface ListedTool {
  name: string;
  description?: string | undefined;
  inputSchema?: unknown;
}

/** JSON with object keys sorted at every level: one text for one value. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x === undefined ? null : x)).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** Hex SHA-256 of what the operator approves: the tool's name, description and input schema. */
export function toolHash(t: ListedTool): string {
  return createHash('sha256')
    .update(
      ['talon-mcp-tool-v1', canonicalJson({ name: t.name, description: t.description ?? '', inputSchema: t.inputSchema ?? {} })].join('\n'),
    )
    .digest('hex');
}

const TOOL_NAME_MAX = 64;

/**
 * The model's name of a server's tool: `mcp_<server>_<tool>`, anything outside
 * [a-zA-Z0-9_-] replaced; a name that had to change or be cut gets a hash of the
 * original so two tools never share one. Server names hold no `_`: the first `_`
 * after the prefix always ends the server's part.
 */
export function mcpToolName(server: string, tool: string): string {
  const raw = `mcp_${server}_${tool}`;
  const clean = raw.replace(/[^a-zA-Z0-9_-]/g, '_');
  if (clean === raw && clean.length <= TOOL_NAME_MAX) return clean;
  const hash = createHash('sha256').update(tool).digest('hex').slice(0, 8);
  return `${clean.slice(0, TOOL_NAME_MAX - hash.length - 1)}_${hash}`;
}

export type ToolStanding = 'approved' | 'changed' | 'new';

export interface ToolReview {
  name: string;
  sha256: string;
  standing: ToolStanding;
  approved?: McpApprovedTool;
}

/**
 * Each listed tool against the approvals: `approved` (same hash), `changed` (approved
 * with another hash: not offered until approved again) or `new`; `removed` names
 * approved tools the server no longer lists.
 */
export function reviewTools(
  approved: readonly McpApprovedTool[],
  listed: ReadonlyArray<{ name: string; sha256: string }>,
): { tools: ToolReview[]; removed: string[] } {
  const byName = new Map(approved.map((a) => [a.name, a]));
  const tools = listed.map((t): ToolReview => {
    const a = byName.get(t.name);
    if (!a) return { name: t.name, sha256: t.sha256, standing: 'new' };
    return { name: t.name, sha256: t.sha256, standing: a.sha256 === t.sha256 ? 'approved' : 'changed', approved: a };
  });
  const names = new Set(listed.map((t) => t.name));
  return { tools, removed: approved.filter((a) => !names.has(a.name)).map((a) => a.name) };
}

/**
 * The record after an approval of what the server lists now: one tool (`tool`) or
 * every listed tool (the whole server; approvals of tools no longer listed are
 * dropped). Each approval pins the tool's current hash.
 */
export function approveTools(
  s: McpServer,
  listed: ReadonlyArray<{ name: string; sha256: string }>,
  o: { tool?: string; requiresUserApproval: boolean; now: number; by: string },
): McpServer {
  const pick = o.tool === undefined ? listed : listed.filter((t) => t.name === o.tool);
  if (pick.length === 0) {
    throw new McpRuleError(
      o.tool === undefined
        ? `server ${s.name} lists no tools; nothing to approve`
        : `server ${s.name} lists no tool ${JSON.stringify(o.tool)} (see \`talon mcp tools ${s.name}\`)`,
    );
  }
  const fresh = pick.map((t): McpApprovedTool => ({
    name: t.name,
    sha256: t.sha256,
    requiresUserApproval: o.requiresUserApproval,
    approvedAtMs: o.now,
    approvedBy: o.by,
  }));
  const kept = o.tool === undefined ? [] : s.tools.filter((a) => a.name !== o.tool);
  return { ...s, tools: [...kept, ...fresh].sort((a, b) => a.name.localeCompare(b.name)), updatedAtMs: o.now };
}

/** The record after revoking one tool's approval, or every approval (`tool` undefined). */
export function revokeTools(s: McpServer, o: { tool?: string; now: number }): McpServer {
  if (o.tool !== undefined && !s.tools.some((a) => a.name === o.tool))
    throw new McpRuleError(`tool ${JSON.stringify(o.tool)} of server ${s.name} is not approved`);
  return { ...s, tools: o.tool === undefined ? [] : s.tools.filter((a) => a.name !== o.tool), updatedAtMs: o.now };
}
