// Destination policy: default deny, per calling principal (host, port, method).
// Pure; the proxy asks `decideDestination` before any DNS lookup or connection.

export interface DestinationRule {
  /** Principal the rule applies to: a service name (`orchestrator`) or a skill id (`skill:name@version`). */
  principal: string;
  /** Exact host name or IP, or `*.suffix` for any subdomain of suffix (not suffix itself). */
  host: string;
  /** Port; undefined means the scheme's default port only. */
  port?: number;
  /** Allowed methods (upper case); undefined means GET, HEAD and POST. */
  methods?: readonly string[];
}

export interface DestinationDecision {
  allowed: boolean;
  /** Stable reason: allowed, host_not_allowed, port_not_allowed, method_not_allowed, scheme_not_allowed. */
  reason: string;
  rule?: DestinationRule;
}

const DEFAULT_METHODS = ['GET', 'HEAD', 'POST'];

export function defaultPort(scheme: string): number {
  return scheme === 'https:' || scheme === 'wss:' ? 443 : 80;
}

/** Lower-cases, strips a trailing dot and IPv6 brackets. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export function hostMatches(pattern: string, host: string): boolean {
  const p = normalizeHost(pattern);
  const h = normalizeHost(host);
  if (p.startsWith('*.')) {
    const suffix = p.slice(1); // ".example.com"
    return h.endsWith(suffix) && h.length > suffix.length;
  }
  return p === h;
}

export function decideDestination(
  rules: readonly DestinationRule[],
  req: { principal: string; method: string; scheme: string; host: string; port: number },
): DestinationDecision {
  if (req.scheme !== 'http:' && req.scheme !== 'https:') return { allowed: false, reason: 'scheme_not_allowed' };
  const forPrincipal = rules.filter((r) => r.principal === req.principal);
  const hostRules = forPrincipal.filter((r) => hostMatches(r.host, req.host));
  if (hostRules.length === 0) return { allowed: false, reason: 'host_not_allowed' };
  const portRules = hostRules.filter((r) => (r.port ?? defaultPort(req.scheme)) === req.port);
  if (portRules.length === 0) return { allowed: false, reason: 'port_not_allowed' };
  const method = req.method.toUpperCase();
  const rule = portRules.find((r) => (r.methods ?? DEFAULT_METHODS).includes(method));
  if (!rule) return { allowed: false, reason: 'method_not_allowed' };
  return { allowed: true, reason: 'allowed', rule };
}

/** Parses one `host:port` entry of TALON_EGRESS_ALLOW_PRIVATE. */
export function parseHostPort(entry: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: normalizeHost(m[1]!), port };
}

export function privateAllowed(list: ReadonlyArray<{ host: string; port: number }>, host: string, port: number): boolean {
  const h = normalizeHost(host);
  return list.some((e) => e.host === h && e.port === port);
}

/**
 * Rules Talon derives from its own configuration: the orchestrator may reach the
 * LLM (and remote embeddings) endpoint, the gateway the chat platforms it
 * delivers to. Everything else needs an operator policy file or a skill grant.
 */
export function builtinRules(opts: {
  /** Every provider of every model (TALON_LLM_MODELS). */
  llmBaseUrls?: readonly string[];
  embeddingsBaseUrl?: string;
  channelUrls?: ReadonlyArray<string | undefined>;
  /**
   * WebSocket gateways of chat platforms (Discord): the host, and its sibling hosts, where
   * the platform sends a session to resume (gateway.discord.gg → *.discord.gg).
   */
  channelGatewayUrls?: ReadonlyArray<string | undefined>;
  /** Chat platforms whose sends are PUTs (Matrix: idempotent by transaction id): GET, POST and PUT. */
  channelPutUrls?: ReadonlyArray<string | undefined>;
}): DestinationRule[] {
  const rules: DestinationRule[] = [];
  const add = (principal: string, base: string | undefined, methods: readonly string[] = ['GET', 'POST']) => {
    if (!base) return;
    const u = new URL(base);
    rules.push({
      principal,
      host: normalizeHost(u.hostname),
      port: u.port ? Number(u.port) : defaultPort(u.protocol),
      methods,
    });
  };
  for (const u of opts.llmBaseUrls ?? []) add('orchestrator', u);
  add('orchestrator', opts.embeddingsBaseUrl);
  for (const c of opts.channelUrls ?? []) add('gateway', c);
  for (const c of opts.channelPutUrls ?? []) add('gateway', c, ['GET', 'POST', 'PUT']);
  for (const g of opts.channelGatewayUrls ?? []) {
    if (!g) continue;
    add('gateway', g);
    const u = new URL(g);
    const labels = normalizeHost(u.hostname).split('.');
    if (labels.length >= 3 && !/^[\d.]+$/.test(u.hostname))
      rules.push({
        principal: 'gateway',
        host: `*.${labels.slice(1).join('.')}`,
        port: u.port ? Number(u.port) : defaultPort(u.protocol),
        methods: ['GET'],
      });
  }
  return rules;
}

/** Validates an operator policy document ({"rules": [...]}); throws with the offending index. */
export function parsePolicyDocument(doc: unknown): DestinationRule[] {
  const rules = (doc as { rules?: unknown })?.rules;
  if (!Array.isArray(rules)) throw new Error('policy must be an object with a "rules" array');
  return rules.map((r: unknown, i) => {
    const o = r as Record<string, unknown>;
    if (typeof o.principal !== 'string' || !/^[a-z0-9][a-z0-9:@._-]*$/.test(o.principal)) {
      throw new Error(`rules[${i}].principal must be a service name or skill id`);
    }
    if (typeof o.host !== 'string' || !/^(\*\.)?[A-Za-z0-9.:[\]-]+$/.test(o.host)) {
      throw new Error(`rules[${i}].host must be a host name, an IP or *.suffix`);
    }
    if (o.port !== undefined && (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) {
      throw new Error(`rules[${i}].port must be an integer 1-65535`);
    }
    if (o.methods !== undefined && (!Array.isArray(o.methods) || !o.methods.every((m) => typeof m === 'string' && /^[A-Z]+$/.test(m)))) {
      throw new Error(`rules[${i}].methods must be a list of upper-case HTTP methods`);
    }
    return {
      principal: o.principal,
      host: normalizeHost(o.host),
      port: o.port as number | undefined,
      methods: o.methods as string[] | undefined,
    };
  });
}
