// The skill manifest (skill.json): what a skill is and what it asks for. Parsing is
// strict (unknown keys are refused) because the manifest is signed: a field the
// sandbox ignored would be a field a publisher could smuggle meaning into.
import { SECRET_NAME_PATTERN, SKILL_NAME_PATTERN, SKILL_VERSION_PATTERN, skillId } from '@talon/kit/contracts';
import type { HostGrant, SkillPermissions } from '@talon/proto';
import { SkillPackageError } from './errors.ts';
import { checkSchemaSupported } from './schema.ts';

// Names, versions and secret names are wire contracts (packages/kit/src/contracts.ts):
// a skill may declare only a secret name a {{secret:NAME}} placeholder can carry.
export const NAME_PATTERN = SKILL_NAME_PATTERN;
export const VERSION_PATTERN = SKILL_VERSION_PATTERN;
export { SECRET_NAME_PATTERN };
const ENTRYPOINT_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const HOST_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV6_PATTERN = /^\[[0-9a-f:.]+\]$/;
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export const MANIFEST_LIMITS = {
  descriptionChars: 1024,
  schemaBytes: 16 * 1024,
  hosts: 32,
  secrets: 16,
  memoryMb: { min: 1, max: 4096 },
  timeoutMs: { min: 10, max: 600_000 },
} as const;

export interface ManifestHost {
  host: string;
  port?: number;
  methods?: string[];
}

/** The manifest as published (JSON in skill.json). */
export interface SkillManifest {
  name: string;
  version: string;
  description: string;
  /** Exported function the sandbox calls; default "run". */
  entrypoint?: string;
  inputSchema: Record<string, unknown>;
  permissions: {
    hosts?: Array<string | ManifestHost>;
    secrets?: string[];
    memoryMb: number;
    timeoutMs: number;
    requiresUserApproval?: boolean;
  };
}

export const DEFAULT_ENTRYPOINT = 'run';

/** `name@version`, the id used in CLI arguments, egress principals (`skill:<id>`) and the x-talon-skill header. */
export { skillId };

export function parseSkillId(id: string): { name: string; version: string } {
  const at = id.lastIndexOf('@');
  const name = at < 0 ? id : id.slice(0, at);
  const version = at < 0 ? '' : id.slice(at + 1);
  if (!NAME_PATTERN.test(name) || (version !== '' && !VERSION_PATTERN.test(version))) {
    throw new SkillPackageError('manifest_invalid', `"${id.slice(0, 80)}" is not a skill id; write name@version, e.g. weather@1.0.0`);
  }
  return { name, version };
}

/** JSON with object keys sorted at every level and no whitespace: the signed form of a manifest. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new SkillPackageError('manifest_invalid', 'numbers in the manifest must be finite');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  throw new SkillPackageError('manifest_invalid', `manifest contains a ${typeof value}, which JSON cannot carry`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k))
      throw new SkillPackageError('manifest_invalid', `${where}: unknown field "${k}" (allowed: ${allowed.join(', ')})`);
  }
}

/** Normalises one host entry ("host", "host:port", "*.suffix" or an object) into a grant; throws on anything else. */
export function parseHostEntry(entry: unknown, where: string): HostGrant {
  let host: string;
  let port = 0;
  let methods: string[] = [];
  if (typeof entry === 'string') {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(entry.trim().toLowerCase());
    if (!m) throw new SkillPackageError('manifest_invalid', `${where}: "${entry.slice(0, 100)}" is not host, host:port or *.suffix`);
    host = m[1]!;
    port = m[2] ? Number(m[2]) : 0;
  } else if (isObject(entry)) {
    onlyKeys(entry, ['host', 'port', 'methods'], where);
    if (typeof entry.host !== 'string') throw new SkillPackageError('manifest_invalid', `${where}.host must be a string`);
    host = entry.host.trim().toLowerCase();
    if (entry.port !== undefined) {
      if (typeof entry.port !== 'number' || !Number.isInteger(entry.port))
        throw new SkillPackageError('manifest_invalid', `${where}.port must be an integer`);
      port = entry.port;
    }
    if (entry.methods !== undefined) {
      if (!Array.isArray(entry.methods) || !entry.methods.every((x) => typeof x === 'string' && METHODS.has(x))) {
        throw new SkillPackageError('manifest_invalid', `${where}.methods must list upper-case methods from ${[...METHODS].join(', ')}`);
      }
      methods = [...new Set(entry.methods as string[])].sort();
    }
  } else {
    throw new SkillPackageError('manifest_invalid', `${where} must be a string or {host, port, methods}`);
  }
  if (port !== 0 && (port < 1 || port > 65535)) throw new SkillPackageError('manifest_invalid', `${where}: port ${port} is out of range`);
  const isIp6 = IPV6_PATTERN.test(host);
  if (!isIp6 && !HOST_PATTERN.test(host)) {
    throw new SkillPackageError('manifest_invalid', `${where}: "${host.slice(0, 100)}" is not a host name, an IP address or *.suffix`);
  }
  if (host.startsWith('*.') && host.split('.').length < 3) {
    throw new SkillPackageError(
      'manifest_invalid',
      `${where}: wildcard "${host}" is too broad; name at least a registrable domain (e.g. *.example.com)`,
    );
  }
  return { host: isIp6 ? host.slice(1, -1) : host, port, methods };
}

/** Validates a parsed skill.json; returns it typed. Throws SkillPackageError('manifest_invalid' | 'schema_unsupported'). */
export function validateManifest(raw: unknown): SkillManifest {
  if (!isObject(raw)) throw new SkillPackageError('manifest_invalid', 'skill.json must hold a JSON object');
  onlyKeys(raw, ['name', 'version', 'description', 'entrypoint', 'inputSchema', 'permissions'], 'skill.json');
  const bad = (m: string): never => {
    throw new SkillPackageError('manifest_invalid', m);
  };
  if (typeof raw.name !== 'string' || !NAME_PATTERN.test(raw.name))
    bad('name must be 1-64 characters of a-z, 0-9 and "-", starting with a letter');
  if (typeof raw.version !== 'string' || !VERSION_PATTERN.test(raw.version))
    bad('version must be a semantic version such as 1.0.0 (no "+build" suffix)');
  if (typeof raw.description !== 'string' || raw.description.trim() === '')
    bad('description must say what the skill does (the model reads it)');
  if ((raw.description as string).length > MANIFEST_LIMITS.descriptionChars)
    bad(`description is longer than ${MANIFEST_LIMITS.descriptionChars} characters`);
  if (raw.entrypoint !== undefined && (typeof raw.entrypoint !== 'string' || !ENTRYPOINT_PATTERN.test(raw.entrypoint))) {
    bad('entrypoint must be the name of an exported function');
  }
  if (!isObject(raw.inputSchema)) bad('inputSchema must be a JSON Schema object');
  if (canonicalJson(raw.inputSchema).length > MANIFEST_LIMITS.schemaBytes)
    bad(`inputSchema is larger than ${MANIFEST_LIMITS.schemaBytes} bytes`);
  checkSchemaSupported(raw.inputSchema);
  const p = raw.permissions;
  if (!isObject(p)) return bad('permissions must be an object with at least memoryMb and timeoutMs');
  onlyKeys(p, ['hosts', 'secrets', 'memoryMb', 'timeoutMs', 'requiresUserApproval'], 'permissions');
  if (p.hosts !== undefined) {
    if (!Array.isArray(p.hosts)) bad('permissions.hosts must be a list');
    if ((p.hosts as unknown[]).length > MANIFEST_LIMITS.hosts) bad(`permissions.hosts lists more than ${MANIFEST_LIMITS.hosts} hosts`);
    (p.hosts as unknown[]).forEach((h, i) => parseHostEntry(h, `permissions.hosts[${i}]`));
  }
  if (p.secrets !== undefined) {
    if (!Array.isArray(p.secrets) || !p.secrets.every((s) => typeof s === 'string' && SECRET_NAME_PATTERN.test(s))) {
      bad('permissions.secrets must list secret names (a-z, 0-9 and _, at most 64: what {{secret:NAME}} can carry)');
    }
    if ((p.secrets as string[]).length > MANIFEST_LIMITS.secrets)
      bad(`permissions.secrets lists more than ${MANIFEST_LIMITS.secrets} secrets`);
    if ((p.secrets as unknown[]).length > 0 && (p.hosts === undefined || (p.hosts as unknown[]).length === 0)) {
      bad('permissions.secrets is set but permissions.hosts is empty: a secret is only useful sent to a host');
    }
  }
  const { memoryMb: mem, timeoutMs: tmo } = MANIFEST_LIMITS;
  if (typeof p.memoryMb !== 'number' || !Number.isInteger(p.memoryMb) || p.memoryMb < mem.min || p.memoryMb > mem.max) {
    bad(`permissions.memoryMb must be an integer from ${mem.min} to ${mem.max}`);
  }
  if (typeof p.timeoutMs !== 'number' || !Number.isInteger(p.timeoutMs) || p.timeoutMs < tmo.min || p.timeoutMs > tmo.max) {
    bad(`permissions.timeoutMs must be an integer from ${tmo.min} to ${tmo.max}`);
  }
  if (p.requiresUserApproval !== undefined && typeof p.requiresUserApproval !== 'boolean')
    bad('permissions.requiresUserApproval must be true or false');
  return raw as unknown as SkillManifest;
}

/** The permissions a manifest requests, in the record's normalised form. */
export function requestedPermissions(m: SkillManifest): SkillPermissions {
  const hosts = (m.permissions.hosts ?? []).map((h, i) => parseHostEntry(h, `permissions.hosts[${i}]`));
  return {
    hosts,
    secrets: [...new Set(m.permissions.secrets ?? [])].sort(),
    memoryMb: m.permissions.memoryMb,
    timeoutMs: m.permissions.timeoutMs,
    requiresUserApproval: m.permissions.requiresUserApproval ?? false,
  };
}

/** One line per permission, for `talon skills install/approve/list`. */
export function describePermissions(p: SkillPermissions): string[] {
  const hostLine = (h: HostGrant) => `${h.host}${h.port ? `:${h.port}` : ''}${h.methods.length ? ` (${h.methods.join(', ')})` : ''}`;
  return [
    `network:   ${p.hosts.length ? p.hosts.map(hostLine).join(', ') : 'none'} (only through egress)`,
    `secrets:   ${p.secrets.length ? p.secrets.map((s) => `{{secret:${s}}}`).join(', ') : 'none'}`,
    `memory:    ${p.memoryMb} MiB`,
    `timeout:   ${p.timeoutMs} ms per call`,
    `approval:  ${p.requiresUserApproval ? 'the user approves every call' : 'calls run without asking the user'}`,
  ];
}
