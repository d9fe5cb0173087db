// Which agent profile (talon_agents, `talon agents`) answers a turn, and what that
// changes: its system prompt, its model chain, the tools it is offered and the part of
// the user's memory it reads and writes. Pure, but for AgentBook (the cached profiles).
//
// Routing, first match wins:
//   1. an agent the inbound message names already (a routine's --agent, a parked turn);
//   2. `@name` at the start of the new user message (stripped before the model or memory see it);
//   3. the request's `model` naming an agent (OpenAI API, WebSocket);
//   4. a `user:<id>` route, then 5. a `channel:<name>` route (profiles in name order);
//   6. none: the default agent (TALON_SYSTEM_PROMPT, TALON_LLM_MODEL), as with no profiles.
// `@name` and `model` pick any profile; routes only choose the default for a channel or user.
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { Role, type AgentProfile, type ConversationRef, type InboundMessage, type SearchHit } from '@talon/proto';
import { AgentProfiles, isAgentName, memoryScope } from '@talon/records/agents';

export type ChosenBy = 'named' | 'mention' | 'model' | 'user' | 'channel' | 'default';

export interface RouteInput {
  channel: string;
  user: string;
  /** The new user message. */
  text: string;
  /** The request's model ('' for the default). */
  requestedModel: string;
  /** An agent the message names already (a routine's); '' for none. */
  agent: string;
}

export interface Resolution {
  agent: AgentProfile | undefined;
  /** The user message with an `@name` prefix removed. */
  text: string;
  by: ChosenBy;
}

const MENTION = /^\s*@([a-z0-9][a-z0-9-]{0,31})(?=$|[\s,:;.!?])[\s,:;]*/;

/** The agent for a turn (rules above). Pure. */
export function resolveAgent(agents: readonly AgentProfile[], input: RouteInput): Resolution {
  const byName = (n: string) => agents.find((a) => a.name === n);
  if (input.agent !== '') return { agent: byName(input.agent), text: input.text, by: byName(input.agent) ? 'named' : 'default' };
  const m = MENTION.exec(input.text);
  const mentioned = m ? byName(m[1]!) : undefined;
  if (m && mentioned) return { agent: mentioned, text: input.text.slice(m[0].length), by: 'mention' };
  const modelAgent = input.requestedModel !== '' ? byName(input.requestedModel) : undefined;
  if (modelAgent) return { agent: modelAgent, text: input.text, by: 'model' };
  const sorted = [...agents].sort((a, b) => a.name.localeCompare(b.name));
  for (const kind of ['user', 'channel'] as const) {
    const want = kind === 'user' ? input.user : input.channel;
    if (want === '') continue;
    const hit = sorted.find((a) => a.routes.some((r) => r.kind === kind && r.value === want));
    if (hit) return { agent: hit, text: input.text, by: kind };
  }
  return { agent: undefined, text: input.text, by: 'default' };
}

/**
 * The inbound message as its agent answers it: `agent` and `memory_scope` set, the
 * `@name` prefix removed from the new user message. Unchanged when the default agent answers.
 */
export function routeInbound(agents: readonly AgentProfile[], inbound: InboundMessage): { inbound: InboundMessage; by: ChosenBy } {
  let last = -1;
  for (let i = inbound.messages.length - 1; i >= 0; i--)
    if (inbound.messages[i]!.role === Role.ROLE_USER) {
      last = i;
      break;
    }
  const conv = inbound.conversation;
  const r = resolveAgent(agents, {
    channel: conv?.channel ?? '',
    user: conv?.userId ?? '',
    text: last >= 0 ? inbound.messages[last]!.content : '',
    requestedModel: inbound.model,
    agent: inbound.agent ?? '',
  });
  if (!r.agent) {
    const { agent: _agent, memoryScope: _scope, ...rest } = inbound;
    return { inbound: rest, by: r.by };
  }
  const messages = inbound.messages.map((msg, i) => (i === last ? { ...msg, content: r.text } : msg));
  return { inbound: { ...inbound, messages, agent: r.agent.name, memoryScope: memoryScope(r.agent) }, by: r.by };
}

const SCOPE_MARK = '+agent:';

/** The conversation memory keeps an agent's turns in: the thread suffixed with its scope. */
export function memoryConversation(conv: ConversationRef, scope: string): ConversationRef {
  return scope === '' ? conv : { ...conv, threadId: `${conv.threadId}${SCOPE_MARK}${scope}` };
}

/** Whether a recalled hit belongs to the scope: turns of its scope's threads only; documents are the user's. */
export function inMemoryScope(hit: Pick<SearchHit, 'kind' | 'threadId'>, scope: string): boolean {
  if (hit.kind !== 'turn') return true;
  const at = hit.threadId.lastIndexOf(SCOPE_MARK);
  return scope === '' ? at < 0 : at >= 0 && hit.threadId.slice(at + SCOPE_MARK.length) === scope;
}

/** Whether the agent is offered a skill (no agent: every approved skill, as before profiles). */
export function offersSkill(agent: AgentProfile | undefined, skill: string): boolean {
  return !agent || agent.allSkills || agent.skills.includes(skill);
}

/** Whether the agent is offered an MCP tool: its server named, or `server/tool`. */
export function offersMcpTool(agent: AgentProfile | undefined, server: string, tool: string): boolean {
  return !agent || agent.allMcp || agent.mcp.includes(server) || agent.mcp.includes(`${server}/${tool}`);
}

/** The agent profiles, read from talon_agents and cached for `ttlMs`; the last list is kept while NATS is away. */
export class AgentBook {
  private readonly store: AgentProfiles;
  private readonly ttlMs: number;
  private readonly log: Pick<Logger, 'warn'>;
  private cached: { at: number; list: AgentProfile[] } | undefined;
  private opened: Promise<unknown> | undefined;

  constructor(nc: NatsConnection, opts: { ttlMs: number; log: Pick<Logger, 'warn'> }) {
    this.store = new AgentProfiles(nc);
    this.ttlMs = opts.ttlMs;
    this.log = opts.log;
  }

  async list(): Promise<AgentProfile[]> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < this.ttlMs) return this.cached.list;
    try {
      this.opened ??= this.store.open();
      await this.opened;
      const list = (await this.store.list()).filter((p) => isAgentName(p.name));
      this.cached = { at: now, list };
      return list;
    } catch (err) {
      this.opened = undefined;
      this.log.warn({ err: (err as Error).message }, 'agent profiles unreadable; using the last ones read');
      if (this.cached) return this.cached.list;
      throw err;
    }
  }

  async get(name: string): Promise<AgentProfile | undefined> {
    return name === '' ? undefined : (await this.list()).find((p) => p.name === name);
  }
}
