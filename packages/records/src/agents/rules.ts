// The rules of an agent profile (talon_agents), pure and shared: the CLI checks a
// profile with them before it writes it, the orchestrator routes turns and applies
// a profile with them, the gateway accepts an agent's name as a model with them.
import type { AgentProfile, AgentRoute } from '@talon/proto';

/** A profile that breaks a rule; the message says what to do instead. */
export class AgentRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentRuleError';
  }
}

const AGENT_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
export const AGENT_NAME_RULE = '1-32 characters of a-z, 0-9 and -, starting with a letter or digit';
export const ROUTE_KINDS = ['channel', 'user'] as const;
export type RouteKind = (typeof ROUTE_KINDS)[number];
/** A channel or user id in a route: what the gateway and memory accept. */
const ROUTE_VALUE = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,127}$/;
/** A skill, MCP server or `server/tool` in an allow list. */
const TOOL_ENTRY = /^[a-z0-9][a-z0-9_-]{0,63}(\/[A-Za-z0-9_.-]{1,128})?$/;
/** Most characters of a system prompt. */
export const MAX_PROMPT_CHARS = 32_000;

export function isAgentName(name: string): boolean {
  return AGENT_NAME.test(name);
}

export function checkAgentName(name: string): string {
  if (!isAgentName(name)) throw new AgentRuleError(`agent name ${JSON.stringify(name.slice(0, 40))} must be ${AGENT_NAME_RULE}`);
  return name;
}

/** `channel:<name>` or `user:<id>`. */
export function parseRoute(raw: string): AgentRoute {
  const i = raw.indexOf(':');
  const kind = i < 0 ? '' : raw.slice(0, i);
  const value = i < 0 ? '' : raw.slice(i + 1);
  if (!(ROUTE_KINDS as readonly string[]).includes(kind) || !ROUTE_VALUE.test(value))
    throw new AgentRuleError(
      `--route ${JSON.stringify(raw.slice(0, 60))} must be channel:<channel> (telegram, slack, webhook, api, web, routine, …) or user:<user id>`,
    );
  return { kind, value };
}

export function routeText(r: AgentRoute): string {
  return `${r.kind}:${r.value}`;
}

/** `own` (''), or `shared:<agent>` (that agent's name). */
export function parseMemory(raw: string): string {
  if (raw === 'own') return '';
  if (raw.startsWith('shared:')) return checkAgentName(raw.slice('shared:'.length));
  throw new AgentRuleError(`--memory must be own or shared:<agent> (got ${JSON.stringify(raw.slice(0, 40))})`);
}

/** An allow list: `*` (all), `none` or '' (none), or comma-separated names. */
export function parseAllowList(flag: string, raw: string): { all: boolean; names: string[] } {
  const v = raw.trim();
  if (v === '*' || v === 'all') return { all: true, names: [] };
  if (v === '' || v === 'none') return { all: false, names: [] };
  const names = [
    ...new Set(
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
  ];
  for (const n of names)
    if (!TOOL_ENTRY.test(n))
      throw new AgentRuleError(
        `${flag} entry ${JSON.stringify(n.slice(0, 60))} is not a name${flag === '--mcp' ? ' (server, or server/tool)' : ''}; give names separated by commas, '*' for all, or none`,
      );
  return { all: false, names };
}

/** Whose memory the agent's turns use: its own name, or the agent it shares with. */
export function memoryScope(p: Pick<AgentProfile, 'name' | 'memorySharedWith'>): string {
  return p.memorySharedWith || p.name;
}

/** A whole profile, against the deployment's model names when known; returns it unchanged. */
export function checkProfile(p: AgentProfile, models?: readonly string[]): AgentProfile {
  checkAgentName(p.name);
  if (p.name === 'talon' || models?.includes(p.name))
    throw new AgentRuleError(
      `agent name ${p.name} is a model name; agents and models share the names a client gives as "model": pick another`,
    );
  if (p.systemPrompt.trim() === '') throw new AgentRuleError('--prompt is required: the agent’s system prompt');
  if (p.systemPrompt.length > MAX_PROMPT_CHARS) throw new AgentRuleError(`--prompt is longer than ${MAX_PROMPT_CHARS} characters`);
  if (p.model === '') throw new AgentRuleError('--model is required: a model name of TALON_LLM_MODELS');
  const chain = [p.model, ...p.failover];
  if (new Set(chain).size !== chain.length) throw new AgentRuleError('--failover repeats a model of the chain; name each model once');
  if (models && models.length > 0)
    for (const m of chain)
      if (!models.includes(m))
        throw new AgentRuleError(`model ${JSON.stringify(m.slice(0, 60))} is not in TALON_LLM_MODELS; available: ${models.join(', ')}`);
  if (p.memorySharedWith === p.name) throw new AgentRuleError('--memory shared:<agent> names the agent itself; use --memory own');
  for (const r of p.routes) parseRoute(routeText(r));
  return p;
}

/** One line per profile, for `talon agents list`. */
export function describeProfile(p: AgentProfile): string {
  const list = (all: boolean, names: string[]) => (all ? '*' : names.length ? names.join(',') : 'none');
  return [
    p.name,
    `model=${[p.model, ...p.failover].join('>')}`,
    `skills=${list(p.allSkills, p.skills)}`,
    `mcp=${list(p.allMcp, p.mcp)}`,
    `memory=${p.memorySharedWith ? `shared:${p.memorySharedWith}` : 'own'}`,
    `routes=${p.routes.length ? p.routes.map(routeText).join(',') : '-'}`,
  ].join('  ');
}
