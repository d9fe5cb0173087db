// Wire-level contracts: every name, id and token shape that crosses a process
// boundary, defined once with its parser and constructor. Services, the CLI and the
// shared records (`@talon/records`) check these with this code and nothing else, so
// a name one side accepts is a name the other side can use.
//
//   secret name     a-z, 0-9, _ (1-64)          placeholders {{secret:NAME}}, vault rows, skill manifests
//   skill name      a-z, 0-9, - (1-64)          manifests, KV keys skill.<name>.<version>, tool names
//   skill version   semver, no +build (5-32)    idem ("+" is not valid in a NATS KV key)
//   skill id        <name>@<version>            CLI arguments, the x-talon-skill header
//   skill principal skill:<name>@<version>      egress policy and grants, vault secret policies
//   MCP server      a-z, 0-9, - (1-24)          KV keys server.<name>, the x-talon-mcp header, principal mcp:<name>
//   API token       talon_pat_ + 64 hex         stored only as its SHA-256 (talon_tokens keys)
import { createHash, randomBytes } from 'node:crypto';

// ---- secret names and placeholders ----

// The one definition of the secret-name grammar; every pattern below is built from it.
const SECRET_NAME = '[a-z0-9_]{1,64}';
/** A vault secret's name: what `{{secret:NAME}}` can carry. */
export const SECRET_NAME_PATTERN = new RegExp(`^${SECRET_NAME}$`);
/** Every well-formed placeholder in a text (global: use with matchAll/replace). Group 1 is the name. */
export const PLACEHOLDER_PATTERN = new RegExp(`\\{\\{\\s*secret:(${SECRET_NAME})\\s*\\}\\}`, 'g');
/** Anything that starts like a placeholder (to refuse malformed ones rather than pass them on). */
export const PLACEHOLDER_START = /\{\{\s*secret:/i;
/** A whole header value `<Scheme> {{secret:NAME}}` (e.g. Bearer, Basic); group 1 is the name. */
export function schemePlaceholderPattern(scheme: string): RegExp {
  return new RegExp(`^${scheme}\\s+\\{\\{\\s*secret:(${SECRET_NAME})\\s*\\}\\}$`, 'i');
}
export const SECRET_NAME_RULE = '1-64 characters of a-z, 0-9 and _';

export function isSecretName(name: string): boolean {
  return SECRET_NAME_PATTERN.test(name);
}

/** `{{secret:NAME}}`; throws on a name no placeholder can carry. */
export function secretPlaceholder(name: string): string {
  if (!isSecretName(name)) throw new Error(`secret name must be ${SECRET_NAME_RULE}; got ${JSON.stringify(name.slice(0, 40))}`);
  return `{{secret:${name}}}`;
}

// ---- skills: names, versions, ids, principals, the skill header ----

export const SKILL_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}[a-z0-9]$|^[a-z]$/;
// Semantic version without build metadata ("+" is not valid in NATS KV keys), at most 32 characters.
export const SKILL_VERSION_PATTERN =
  /^(?=.{5,32}$)(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})(-[0-9A-Za-z-]{1,32}(\.[0-9A-Za-z-]{1,32}){0,4})?$/;
/** The header the sandbox sets on a skill's HTTP request to egress: `x-talon-skill: <name>@<version>`. */
export const SKILL_HEADER = 'x-talon-skill';
export const SKILL_PRINCIPAL_PREFIX = 'skill:';
/**
 * How long a skill call may wait for a plugin host (a free one, or one started for it)
 * on top of the skill's own timeout. The timeout counts from the moment a host runs the
 * call, so a cold host's start on a busy machine does not expire a 1 s skill; the caller
 * waits timeout + this + its reply slack at most.
 */
export const SKILL_HOST_WAIT_MS = 5_000;

export interface SkillRef {
  name: string;
  version: string;
}

export function isSkillName(name: string): boolean {
  return SKILL_NAME_PATTERN.test(name);
}

export function isSkillVersion(version: string): boolean {
  return SKILL_VERSION_PATTERN.test(version);
}

/** `name@version`: CLI arguments and the x-talon-skill header. */
export function skillId(name: string, version: string): string {
  return `${name}@${version}`;
}

/** Parses `name@version` (both required); undefined when it is not one. */
export function parseSkillRef(id: string): SkillRef | undefined {
  const at = id.lastIndexOf('@');
  if (at < 0) return undefined;
  const name = id.slice(0, at);
  const version = id.slice(at + 1);
  return isSkillName(name) && isSkillVersion(version) ? { name, version } : undefined;
}

/** `skill:name@version`: who egress and the vault see when the sandbox acts for a skill. */
export function skillPrincipal(name: string, version: string): string {
  return `${SKILL_PRINCIPAL_PREFIX}${skillId(name, version)}`;
}

/** Parses `skill:name@version`; undefined when it is not a skill principal. */
export function parseSkillPrincipal(principal: string): SkillRef | undefined {
  return principal.startsWith(SKILL_PRINCIPAL_PREFIX) ? parseSkillRef(principal.slice(SKILL_PRINCIPAL_PREFIX.length)) : undefined;
}

export function isSkillPrincipal(principal: string): boolean {
  return parseSkillPrincipal(principal) !== undefined;
}

// ---- MCP servers: names, principals, the MCP header ----

// Short, so `mcp_<server>_<tool>` keeps room for the tool's name within 64 characters.
export const MCP_SERVER_NAME_PATTERN = /^[a-z][a-z0-9-]{0,23}$/;
export const MCP_SERVER_NAME_RULE = '1-24 characters of a-z, 0-9 and -, starting with a letter';
/** The header the orchestrator sets on an MCP server's request to egress: `x-talon-mcp: <server>`. */
export const MCP_HEADER = 'x-talon-mcp';
export const MCP_PRINCIPAL_PREFIX = 'mcp:';

export function isMcpServerName(name: string): boolean {
  return MCP_SERVER_NAME_PATTERN.test(name);
}

/** `mcp:<server>`: who egress and the vault see when the orchestrator talks to an MCP server. */
export function mcpPrincipal(server: string): string {
  if (!isMcpServerName(server)) throw new Error(`MCP server name must be ${MCP_SERVER_NAME_RULE}`);
  return `${MCP_PRINCIPAL_PREFIX}${server}`;
}

/** The server of an `mcp:<server>` principal; undefined when it is not one. */
export function parseMcpPrincipal(principal: string): string | undefined {
  if (!principal.startsWith(MCP_PRINCIPAL_PREFIX)) return undefined;
  const name = principal.slice(MCP_PRINCIPAL_PREFIX.length);
  return isMcpServerName(name) ? name : undefined;
}

// ---- API tokens ----

export const TOKEN_PREFIX = 'talon_pat_';
export const TOKEN_PATTERN = /^talon_pat_[0-9a-f]{64}$/;

export function isTokenValue(token: string): boolean {
  return TOKEN_PATTERN.test(token);
}

/** A new random API token (shown once, stored only as its hash). */
export function newTokenValue(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('hex')}`;
}

/** The talon_tokens key of a token: lower-case hex SHA-256 of its UTF-8 bytes. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
