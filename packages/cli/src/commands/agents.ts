// `talon agents add|list|edit|rm`: agent profiles — each its own system prompt, model
// chain (failover across TALON_LLM_MODELS names), allowed skills and MCP tools, memory
// scope and routing rules. Profiles live in talon_agents (written here, as the admin
// identity, after the checks of @talon/records/agents); the orchestrator routes every
// turn with them (services/orchestrator/src/agents.ts). With no profile, every turn is
// the default agent's (TALON_SYSTEM_PROMPT, TALON_LLM_MODEL), as before.
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { loadConfig } from '@talon/kit/config';
import { llmModelFields, modelsConfig } from '@talon/kit/models';
import type { NatsConnection } from '@talon/kit/nats';
import type { AgentProfile } from '@talon/proto';
import {
  AGENT_NAME_RULE,
  AgentProfiles,
  AgentRuleError,
  checkAgentName,
  checkProfile,
  describeProfile,
  parseAllowList,
  parseMemory,
  parseRoute,
} from '@talon/records/agents';
import { CliError, withAdminNats } from '../context.ts';

/** Rule violations become CLI errors (exit 1) with the rule's own message. */
function rule<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AgentRuleError) throw new CliError(err.message);
    throw err;
  }
}

/** The options of `add` and `edit` (every one optional for `edit`). */
export interface ProfileOptions {
  prompt?: string;
  promptFile?: string;
  model?: string;
  failover?: string;
  skills?: string;
  mcp?: string;
  memory?: string;
  route?: string[];
  clearRoutes?: boolean;
}

function splitNames(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function promptOf(o: ProfileOptions, read: (path: string) => string): string | undefined {
  if (o.prompt !== undefined && o.promptFile !== undefined) throw new AgentRuleError('give --prompt or --prompt-file, not both');
  return o.promptFile !== undefined ? read(o.promptFile) : o.prompt;
}

/** `edit`: the options given change the profile, the others keep it. Pure but for reading --prompt-file. */
export function applyOptions(
  p: AgentProfile,
  o: ProfileOptions,
  opts: { now: number; models?: readonly string[]; read?: (path: string) => string },
): AgentProfile {
  const next: AgentProfile = { ...p, updatedAtMs: opts.now };
  const prompt = promptOf(o, opts.read ?? ((path) => readFileSync(path, 'utf8')));
  if (prompt !== undefined) next.systemPrompt = prompt.trim();
  if (o.model !== undefined) next.model = o.model.trim();
  if (o.failover !== undefined) next.failover = splitNames(o.failover);
  if (o.skills !== undefined) {
    const l = parseAllowList('--skills', o.skills);
    next.allSkills = l.all;
    next.skills = l.names;
  }
  if (o.mcp !== undefined) {
    const l = parseAllowList('--mcp', o.mcp);
    next.allMcp = l.all;
    next.mcp = l.names;
  }
  if (o.memory !== undefined) next.memorySharedWith = parseMemory(o.memory.trim());
  if (o.clearRoutes) next.routes = [];
  if (o.route && o.route.length > 0) {
    const seen = new Set(next.routes.map((r) => `${r.kind}:${r.value}`));
    for (const raw of o.route) {
      const r = parseRoute(raw.trim());
      if (!seen.has(`${r.kind}:${r.value}`)) next.routes = [...next.routes, r];
      seen.add(`${r.kind}:${r.value}`);
    }
  }
  return checkProfile(next, opts.models);
}

/** The profile `add` writes; throws AgentRuleError naming what is wrong. */
export function profileFromOptions(
  name: string,
  o: ProfileOptions,
  opts: { now: number; by: string; models?: readonly string[]; read?: (path: string) => string },
): AgentProfile {
  const empty: AgentProfile = {
    name: checkAgentName(name),
    systemPrompt: '',
    model: '',
    failover: [],
    skills: [],
    allSkills: false,
    mcp: [],
    allMcp: false,
    memorySharedWith: '',
    routes: [],
    createdAtMs: opts.now,
    updatedAtMs: opts.now,
    createdBy: opts.by,
  };
  return applyOptions(empty, o, opts);
}

/**
 * The deployment's model names when this shell has TALON_LLM_MODELS (as `talon up` does);
 * undefined otherwise (the CLI then cannot check them and the orchestrator does, per turn).
 */
export function knownModels(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  if (!env.TALON_LLM_MODELS) return undefined;
  try {
    return modelsConfig(loadConfig('talon', llmModelFields(), env)).models.map((m) => m.name);
  } catch {
    return undefined;
  }
}

async function profiles(nc: NatsConnection): Promise<AgentProfiles> {
  return new AgentProfiles(nc).open();
}

/** A profile whose memory is shared names an existing agent. */
async function checkSharedWith(store: AgentProfiles, p: AgentProfile): Promise<void> {
  if (p.memorySharedWith && !(await store.get(p.memorySharedWith)))
    throw new CliError(`--memory shared:${p.memorySharedWith} names no agent; add ${p.memorySharedWith} first (see \`talon agents list\`)`);
}

export async function addProfile(nc: NatsConnection, p: AgentProfile): Promise<void> {
  const store = await profiles(nc);
  await checkSharedWith(store, p);
  if (!(await store.create(p)))
    throw new CliError(`an agent named ${p.name} exists already: change it with \`talon agents edit ${p.name} …\`, or pick another name`);
}

export async function editProfile(nc: NatsConnection, name: string, change: (p: AgentProfile) => AgentProfile): Promise<AgentProfile> {
  const store = await profiles(nc);
  for (let i = 0; i < 5; i++) {
    const cur = await store.get(name);
    if (!cur) throw new CliError(`no agent ${name} (see \`talon agents list\`)`);
    const next = rule(() => change(cur.profile));
    await checkSharedWith(store, next);
    if (await store.update(next, cur.revision)) return next;
  }
  throw new CliError(`agent ${name} kept changing while it was updated; try again`);
}

export async function removeProfile(nc: NatsConnection, name: string): Promise<void> {
  const store = await profiles(nc);
  if (!(await store.get(name))) throw new CliError(`no agent ${name} (see \`talon agents list\`)`);
  const sharing = (await store.list()).filter((p) => p.memorySharedWith === name).map((p) => p.name);
  if (sharing.length > 0)
    throw new CliError(
      `agents ${sharing.join(', ')} share ${name}'s memory; give them --memory own (talon agents edit NAME --memory own) first`,
    );
  await store.remove(name);
}

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

function profileOptions(c: Command, forEdit: boolean): Command {
  return c
    .option('--prompt <text>', forEdit ? 'a new system prompt' : 'the agent’s system prompt (or --prompt-file)')
    .option('--prompt-file <path>', 'read the system prompt from a file')
    .option('--model <name>', 'a model name of TALON_LLM_MODELS, tried first')
    .option('--failover <models>', 'further model names, comma-separated, tried in order when the first fails (429, 5xx, timeouts)')
    .option('--skills <names>', "skills it is offered: names, comma-separated; '*' for all approved ones; none (the default on add)")
    .option(
      '--mcp <names>',
      "MCP servers (docs) or tools (docs/search) it is offered; '*' for all approved ones; none (the default on add)",
    )
    .option('--memory <scope>', 'own (its own memory, the default on add) or shared:<agent> (that agent’s)')
    .option(
      '--route <rule>',
      'answer turns of channel:<channel> or user:<user id> by default (repeatable; @name and model: <name> pick any agent)',
      collect,
      [],
    );
}

export function registerAgents(program: Command): void {
  const agents = program
    .command('agents')
    .description('agent profiles: each its own system prompt, model chain, skills and MCP tools, memory scope and routes')
    .addHelpText(
      'after',
      `
Which agent answers a turn, first match wins:
  1. a routine's --agent;  2. "@name …" at the start of the message (the prefix is removed);
  3. the OpenAI API's "model": "<name>";  4. a --route user:<id>;  5. a --route channel:<name>;
  6. none: the default agent (TALON_SYSTEM_PROMPT, TALON_LLM_MODEL), as without profiles.
Tools: an agent is offered the built-in memory tools, and only the skills and MCP tools it
is allowed ('*' for all approved ones). Memory: an agent's conversations and recall are
its own (own), or those of the agent it shares with (shared:<agent>).

  talon agents add research --model smart --failover fast --prompt 'You are a careful researcher.' \\
      --skills web-search --mcp docs --route channel:slack
  talon agents add helper --model fast --prompt-file helper.txt --memory shared:research --route user:alice
  talon agents edit research --mcp '*'
  talon agents rm helper`,
    );
  profileOptions(
    agents.command('add').description('add an agent profile (--prompt and --model are required)').argument('<name>', AGENT_NAME_RULE),
    false,
  ).action(async (name: string, o: ProfileOptions) => {
    const p = rule(() => profileFromOptions(name, o, { now: Date.now(), by: `cli:${userInfo().username}`, models: knownModels() }));
    await withAdminNats((nc) => addProfile(nc, p));
    console.log(`Agent ${p.name} added: ${describeProfile(p)}`);
    console.log(
      `Talk to it with "@${p.name} …" in any channel, or "model": "${p.name}" in the API${p.routes.length ? '; its routes send it those turns by default' : ''}.`,
    );
  });
  agents
    .command('list')
    .description('agent profiles: models, allowed tools, memory scope, routes')
    .action(async () => {
      const all = await withAdminNats(async (nc) => (await profiles(nc)).list());
      if (all.length === 0) {
        console.log(
          'No agents: every turn is answered by the default agent (TALON_SYSTEM_PROMPT, TALON_LLM_MODEL). Add one with: talon agents add NAME --model M --prompt …',
        );
        return;
      }
      for (const p of all) {
        console.log(describeProfile(p));
        console.log(`  prompt: ${p.systemPrompt.replace(/\s+/g, ' ').slice(0, 120)}${p.systemPrompt.length > 120 ? '…' : ''}`);
      }
    });
  profileOptions(
    agents
      .command('edit')
      .description('change an agent profile: the options given replace those values (--route adds; --clear-routes first removes all)')
      .argument('<name>', 'the agent')
      .option('--clear-routes', 'remove its routes (before any --route given)'),
    true,
  ).action(async (name: string, o: ProfileOptions) => {
    const models = knownModels();
    const p = await withAdminNats((nc) => editProfile(nc, name, (cur) => applyOptions(cur, o, { now: Date.now(), models })));
    console.log(`Agent ${p.name} changed: ${describeProfile(p)}`);
  });
  agents
    .command('rm')
    .description('remove an agent profile (its memory stays: talon memory list/forget --user …)')
    .argument('<name>', 'the agent')
    .action(async (name: string) => {
      await withAdminNats((nc) => removeProfile(nc, name));
      console.log(`Agent ${name} removed; its turns now go to the default agent or another agent's route.`);
    });
}
