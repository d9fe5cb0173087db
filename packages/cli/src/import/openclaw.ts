// `talon import openclaw DIR`: what an OpenClaw state directory (~/.openclaw) holds and where
// each part goes in Talon. readOpenClawDir reads the files the plan needs (nothing else);
// planOpenClawImport turns them into a plan, pure: settings for the operator's env file
// (TALON_LLM_MODELS, TALON_CHANNELS), vault secrets with their hosts, placement and
// principals, memory documents, and what is not imported and why. Credential values live
// only in the plan's SecretValues, which never renders them (toString, JSON, inspect).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import JSON5 from 'json5';
import { keyBindings, parseModels, type LlmWireFormat } from '@talon/kit/models';
import { PLACEMENT_BY_NAME, type PlacementName } from '@talon/kit/placements';
import type { Placement } from '@talon/proto';

/** The files of an OpenClaw state directory, by path relative to it ('/'-separated). */
export interface OpenClawFiles {
  /** Text of each file read. */
  texts: ReadonlyMap<string, string>;
  /** Files seen but deliberately not read (WhatsApp sessions, other credential stores). */
  unread: readonly string[];
  /** Skill folders found: relative path of each folder holding a SKILL.md. */
  skillDirs: readonly string[];
}

const MAX_FILE_BYTES = 4 * 1024 * 1024;
const WORKSPACE_PERSONA = ['AGENTS.md', 'SOUL.md', 'IDENTITY.md', 'TOOLS.md', 'HEARTBEAT.md', 'BOOTSTRAP.md'];

function rel(dir: string, p: string): string {
  return relative(dir, p).split(sep).join('/');
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function listDir(p: string): string[] {
  try {
    return readdirSync(p).sort();
  } catch {
    return [];
  }
}

/** The workspace directory: agents.defaults.workspace when it lies inside DIR (as ~/.openclaw/…), else DIR/workspace. Pure. */
export function workspaceDir(config: unknown): string {
  const ws = (
    ((config as Record<string, unknown> | undefined)?.agents as Record<string, unknown> | undefined)?.defaults as
      Record<string, unknown> | undefined
  )?.workspace;
  if (typeof ws === 'string') {
    const m = /^(?:~|\$HOME)\/\.openclaw\/([A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*)\/?$/.exec(ws);
    if (m && !m[1]!.split('/').includes('..')) return m[1]!;
  }
  return 'workspace';
}

/** Reads the files an import needs from DIR; throws when DIR has no openclaw.json. */
export function readOpenClawDir(dir: string): OpenClawFiles {
  const texts = new Map<string, string>();
  const unread: string[] = [];
  const read = (p: string) => {
    if (!isFile(p) || statSync(p).size > MAX_FILE_BYTES) return;
    texts.set(rel(dir, p), readFileSync(p, 'utf8'));
  };
  const configPath = join(dir, 'openclaw.json');
  if (!isFile(configPath)) throw new Error(`${dir} holds no openclaw.json: give the OpenClaw state directory (usually ~/.openclaw)`);
  read(configPath);
  read(join(dir, '.env'));
  for (const agent of listDir(join(dir, 'agents'))) read(join(dir, 'agents', agent, 'agent', 'auth-profiles.json'));
  read(join(dir, 'credentials', 'oauth.json'));
  const walk = (p: string): string[] =>
    listDir(p).flatMap((n) => {
      const q = join(p, n);
      return isFile(q) ? [q] : walk(q);
    });
  for (const f of walk(join(dir, 'credentials'))) {
    const r = rel(dir, f);
    if (r !== 'credentials/oauth.json') unread.push(r);
  }
  let config: unknown;
  try {
    config = JSON5.parse(texts.get('openclaw.json') ?? '');
  } catch {
    config = undefined;
  }
  const ws = workspaceDir(config);
  for (const name of ['MEMORY.md', 'USER.md', ...WORKSPACE_PERSONA]) read(join(dir, ws, name));
  for (const name of listDir(join(dir, ws, 'memory'))) if (name.endsWith('.md')) read(join(dir, ws, 'memory', name));
  const skillDirs: string[] = [];
  for (const base of ['skills', `${ws}/skills`]) {
    for (const name of listDir(join(dir, base))) {
      const skill = join(dir, base, name, 'SKILL.md');
      if (existsSync(skill)) {
        read(skill);
        skillDirs.push(`${base}/${name}`);
      }
    }
  }
  return { texts, unread, skillDirs };
}

// ---- the plan ------------------------------------------------------------------

/** Credential values by secret name; never rendered (String, JSON.stringify and util.inspect show names only). */
export class SecretValues {
  readonly #values = new Map<string, string>();
  set(name: string, value: string): void {
    this.#values.set(name, value);
  }
  /** The value as bytes, for the vault call only (the caller zeroes them). */
  bytes(name: string): Buffer {
    const v = this.#values.get(name);
    if (v === undefined) throw new Error(`no value for ${name}`);
    return Buffer.from(v, 'utf8');
  }
  /** True when any stored value occurs in `text` (a last guard on output). */
  leaksInto(text: string): boolean {
    for (const v of this.#values.values()) if (v.length >= 8 && text.includes(v)) return true;
    return false;
  }
  get size(): number {
    return this.#values.size;
  }
  toString(): string {
    return `[${this.#values.size} secret value(s) withheld]`;
  }
  toJSON(): string {
    return this.toString();
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

export interface PlannedSecret {
  name: string;
  /** What it is, for the operator: "Anthropic API key", "Telegram bot token". */
  what: string;
  hosts: string[];
  placement: PlacementName | 'verify';
  /** Header or query name of the placement; '' otherwise. */
  field: string;
  principals: string[];
  /** Where the value was found: "agents/main/agent/auth-profiles.json (profiles.anthropic:default)". */
  from: string;
}

export interface PlannedDocument {
  key: string;
  title: string;
  from: string;
  content: string;
}

export interface ImportPlan {
  /** Lines for the operator's env file (KEY=value; no credential values). */
  settings: string[];
  /** The models TALON_LLM_MODELS offers, one line each. */
  models: string[];
  secrets: PlannedSecret[];
  values: SecretValues;
  documents: PlannedDocument[];
  /** Things found but not imported, each with the reason. */
  notImported: string[];
  /** Every file read, and (`credentials`) those of them that held a credential value. */
  filesRead: string[];
  credentialFiles: string[];
  /** Files holding credentials that were not read (shred them too once no longer needed). */
  unreadCredentialFiles: string[];
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);

/** Parses a dotenv file: KEY=value, optional `export`, quotes, # comments. Pure. */
export function parseDotenv(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    let v = m[2]!;
    if (/^(['"]).*\1$/.test(v)) v = v.slice(1, -1);
    else v = v.replace(/\s+#.*$/, '');
    if (v !== '') out.set(m[1]!, v);
  }
  return out;
}

/** A parse failure that names the place, never the text around it (it may be a credential). */
function parseJson5(text: string, file: string): unknown {
  try {
    return JSON5.parse(text);
  } catch (err) {
    const e = err as { lineNumber?: number; columnNumber?: number };
    throw new Error(`${file} is not valid JSON5 (line ${e.lineNumber ?? '?'}, column ${e.columnNumber ?? '?'})`);
  }
}

interface Provider {
  format: LlmWireFormat | undefined;
  baseUrl: string | undefined;
  /** What OpenClaw's `api` says, when it is a format Talon lacks. */
  unsupportedApi?: string;
}

/** OpenClaw's built-in providers Talon can reach, with their API base URL and wire format. */
const BUILT_IN: Readonly<Record<string, { format: LlmWireFormat; baseUrl: string; what: string }>> = {
  anthropic: { format: 'anthropic', baseUrl: 'https://api.anthropic.com/v1', what: 'Anthropic' },
  openai: { format: 'openai', baseUrl: 'https://api.openai.com/v1', what: 'OpenAI' },
  openrouter: { format: 'openai', baseUrl: 'https://openrouter.ai/api/v1', what: 'OpenRouter' },
  google: { format: 'openai', baseUrl: 'https://generativelanguage.googleapis.com/v1beta/openai', what: 'Google Gemini' },
  groq: { format: 'openai', baseUrl: 'https://api.groq.com/openai/v1', what: 'Groq' },
  mistral: { format: 'openai', baseUrl: 'https://api.mistral.ai/v1', what: 'Mistral' },
  xai: { format: 'openai', baseUrl: 'https://api.x.ai/v1', what: 'xAI' },
  deepseek: { format: 'openai', baseUrl: 'https://api.deepseek.com/v1', what: 'DeepSeek' },
  moonshot: { format: 'openai', baseUrl: 'https://api.moonshot.ai/v1', what: 'Moonshot' },
};
const ENV_KEY_NAME: Readonly<Record<string, string>> = { google: 'GEMINI_API_KEY' };
const API_FORMAT: Readonly<Record<string, LlmWireFormat>> = { 'openai-completions': 'openai', 'anthropic-messages': 'anthropic' };

/** A vault secret name for a provider's key: `anthropic_api_key`. Pure. */
export function providerKeySecret(provider: string): string {
  const base = provider
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 52);
  return `${base || 'provider'}_api_key`;
}

function label(provider: string): string {
  const l = provider
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
  return l || 'provider';
}

function isPrivateHost(host: string): boolean {
  return /^(localhost|127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|\[::1\]|0\.0\.0\.0)/.test(host);
}

/** A document key memory accepts (letters, digits and :@._+-). */
function docKey(path: string): string {
  return `openclaw:${path.replace(/\//g, ':').replace(/[^A-Za-z0-9:@._+-]/g, '_')}`.slice(0, 200);
}

/** Reads a SKILL.md's front-matter name, else the folder's. */
function skillName(text: string | undefined, folder: string): string {
  const fm = text ? /^---\r?\n([\s\S]*?)\r?\n---/.exec(text) : null;
  const name = fm ? /^name:\s*["']?([^"'\r\n]+?)["']?\s*$/m.exec(fm[1]!)?.[1] : undefined;
  return (name ?? folder.split('/').pop()!).slice(0, 80);
}

export interface PlanOptions {
  /** The Talon user memory documents go to; without it they are listed as not imported. */
  user?: string | undefined;
}

/** Plans the import of an OpenClaw state directory's files. Pure; throws on an unreadable openclaw.json. */
export function planOpenClawImport(files: OpenClawFiles, opts: PlanOptions = {}): ImportPlan {
  const values = new SecretValues();
  const secrets: PlannedSecret[] = [];
  const notImported: string[] = [];
  const settings: string[] = [];
  const credentialFiles = new Set<string>();
  const config = obj(parseJson5(files.texts.get('openclaw.json') ?? '', 'openclaw.json')) ?? {};

  // Environment: .env, then the config's `env` block (inline vars, or env.vars).
  const env = new Map<string, { value: string; from: string }>();
  const dotenv = files.texts.get('.env');
  if (dotenv !== undefined) for (const [k, v] of parseDotenv(dotenv)) env.set(k, { value: v, from: `.env (${k})` });
  const envBlock = obj(config.env);
  for (const [k, v] of Object.entries({ ...envBlock, ...obj(envBlock?.vars) })) {
    if (typeof v === 'string' && v !== '' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !env.has(k))
      env.set(k, { value: v, from: `openclaw.json (env.${k})` });
  }

  /** A credential field: a literal, "${VAR}", or a SecretRef {source:"env",id}. */
  const credential = (raw: unknown, file: string, at: string): { value: string; from: string } | undefined => {
    const ref = obj(raw);
    if (ref) {
      const id = str(ref.id);
      if (ref.source === 'env' && id && env.has(id)) return env.get(id);
      notImported.push(
        `${at} in ${file}: a ${str(ref.source) ?? 'secret'} reference Talon cannot resolve; store it yourself with talon secrets set`,
      );
      return undefined;
    }
    const s = str(raw);
    if (!s) return undefined;
    const m = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(s);
    if (m) {
      const hit = env.get(m[1]!);
      if (!hit) notImported.push(`${at} in ${file}: names $${m[1]}, which neither .env nor openclaw.json's env sets; store it yourself`);
      return hit;
    }
    return { value: s, from: `${file} (${at})` };
  };

  const addSecret = (s: Omit<PlannedSecret, 'from'>, found: { value: string; from: string } | undefined): boolean => {
    if (!found || secrets.some((x) => x.name === s.name)) return false;
    secrets.push({ ...s, from: found.from });
    values.set(s.name, found.value);
    credentialFiles.add(found.from.replace(/ \(.*$/, ''));
    return true;
  };

  // ---- models and their keys ----
  const providersCfg = obj(obj(config.models)?.providers) ?? {};
  const providerOf = (id: string): Provider => {
    const p = obj(providersCfg[id]);
    const api = str(p?.api);
    const builtIn = BUILT_IN[id];
    const format = api ? API_FORMAT[api] : (builtIn?.format ?? 'openai');
    return {
      format,
      baseUrl: str(p?.baseUrl) ?? builtIn?.baseUrl,
      ...(api && !API_FORMAT[api] ? { unsupportedApi: api } : {}),
    };
  };
  // Keys per provider, by precedence: auth profiles, models.providers.<id>.apiKey, the environment.
  const keys = new Map<string, { value: string; from: string }>();
  const oauth: string[] = [];
  for (const [file, text] of files.texts) {
    if (!/^agents\/[^/]+\/agent\/auth-profiles\.json$/.test(file)) continue;
    const profiles = obj(obj(parseJson5(text, file))?.profiles) ?? {};
    for (const [id, raw] of Object.entries(profiles)) {
      const p = obj(raw);
      const provider = str(p?.provider) ?? id.split(':')[0]!;
      const type = str(p?.type) ?? str(p?.mode);
      const value = type === 'token' ? str(p?.token) : str(p?.key);
      if ((type === 'api_key' || type === 'token') && value) {
        if (!keys.has(provider)) keys.set(provider, { value, from: `${file} (profiles.${id})` });
      } else if (type === 'oauth') {
        oauth.push(`${provider} (${file}, profile ${id})`);
        credentialFiles.add(file);
      }
    }
  }
  for (const [id, raw] of Object.entries(providersCfg)) {
    const found = credential(obj(raw)?.apiKey, 'openclaw.json', `models.providers.${id}.apiKey`);
    if (found && !keys.has(id)) keys.set(id, found);
  }
  const envKeyOf = (provider: string) => ENV_KEY_NAME[provider] ?? `${provider.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_API_KEY`;

  // Model references: agents.defaults.model (a string or {primary, fallbacks}), agents.defaults.models, providers' models.
  const defaults = obj(obj(config.agents)?.defaults);
  const modelCfg = defaults?.model;
  const primary = str(modelCfg) ?? str(obj(modelCfg)?.primary);
  const fallbacks = (Array.isArray(obj(modelCfg)?.fallbacks) ? (obj(modelCfg)!.fallbacks as unknown[]) : []).flatMap((f) => str(f) ?? []);
  const refs: string[][] = [];
  if (primary) refs.push([primary, ...fallbacks]);
  for (const ref of Object.keys(obj(defaults?.models) ?? {})) refs.push([ref]);
  for (const [id, raw] of Object.entries(providersCfg)) {
    const list = obj(raw)?.models;
    if (Array.isArray(list)) for (const m of list) if (str(obj(m)?.id)) refs.push([`${id}/${str(obj(m)!.id)}`]);
  }
  const models: Array<{ name: string; targets: Json[] }> = [];
  const usedProviders = new Set<string>();
  const privateHosts = new Set<string>();
  const skippedRefs = new Set<string>();
  for (const chain of refs) {
    const name = chain[0]!;
    if (models.some((m) => m.name === name)) continue;
    const targets: Json[] = [];
    for (const ref of chain) {
      const slash = ref.indexOf('/');
      const provider = slash > 0 ? ref.slice(0, slash) : '';
      const model = ref.slice(slash + 1);
      const p = providerOf(provider);
      let why: string | undefined;
      let url: URL | undefined;
      if (!provider) why = 'names no provider (provider/model)';
      else if (p.unsupportedApi)
        why = `uses the ${p.unsupportedApi} API, which Talon does not speak (it speaks openai-completions and anthropic-messages)`;
      else if (!p.baseUrl) why = `provider ${provider} has no baseUrl in openclaw.json and is not one Talon knows`;
      else {
        try {
          url = new URL(p.baseUrl);
        } catch {
          why = `provider ${provider}'s baseUrl is not a URL`;
        }
        if (url && (url.username || url.password || url.search || url.hash))
          why = `provider ${provider}'s baseUrl carries credentials or a query`;
      }
      if (why || !url) {
        if (!skippedRefs.has(ref)) notImported.push(`model ${ref}: ${why}`);
        skippedRefs.add(ref);
        continue;
      }
      if (targets.some((t) => t.label === label(provider))) continue;
      const local = isPrivateHost(url.hostname);
      const key = keys.get(provider) ?? env.get(envKeyOf(provider));
      if (local) privateHosts.add(url.port ? `${url.hostname}:${url.port}` : url.hostname);
      targets.push({
        provider: p.format!,
        base_url: p.baseUrl!.replace(/\/+$/, ''),
        model,
        key: key || !local ? providerKeySecret(provider) : 'none',
        label: label(provider),
      });
      usedProviders.add(provider);
    }
    if (targets.length > 0)
      models.push({ name: /^[A-Za-z0-9._:/@+-]{1,128}$/.test(name) ? name : label(name), targets: targets.slice(0, 8) });
  }
  let modelLinesOut: string[] = [];
  if (models.length > 0) {
    const doc = JSON.stringify(models);
    let parsed;
    try {
      parsed = parseModels(doc);
    } catch (err) {
      throw new Error(`the models of openclaw.json make no valid TALON_LLM_MODELS: ${(err as Error).message}`);
    }
    settings.push(`TALON_LLM_MODELS='${doc}'`);
    if (privateHosts.size > 0) settings.push(`TALON_EGRESS_ALLOW_PRIVATE=${[...privateHosts].join(',')}`);
    modelLinesOut = parsed.map(
      (m, i) =>
        `${m.name}${i === 0 ? ' (default)' : ''}: ${m.targets.map((t) => `${t.label} ${new URL(t.baseUrl).host} ${t.model}`).join(' > ')}`,
    );
    for (const b of keyBindings({ models: parsed, source: 'TALON_LLM_MODELS' })) {
      const provider = [...usedProviders].find((p) => providerKeySecret(p) === b.secret)!;
      const found = keys.get(provider) ?? env.get(envKeyOf(provider));
      const what = `${BUILT_IN[provider]?.what ?? provider} API key`;
      const placement =
        b.format === 'anthropic' ? { placement: 'header' as const, field: 'x-api-key' } : { placement: 'bearer' as const, field: '' };
      if (!addSecret({ name: b.secret, what, hosts: b.hosts, ...placement, principals: ['orchestrator'] }, found))
        notImported.push(`${what}: not found in the directory; store it with talon secrets set ${b.secret} --host ${b.hosts.join(',')}`);
    }
  }
  // Keys of providers no imported model uses are left alone (nothing would use them).
  for (const [provider, found] of keys) {
    if (!usedProviders.has(provider)) {
      notImported.push(`${provider} API key from ${found.from}: no imported model uses provider ${provider}`);
      credentialFiles.add(found.from.replace(/ \(.*$/, ''));
    }
  }
  for (const o of oauth) notImported.push(`OAuth login of ${o}: subscription logins are not API keys; create an API key and store it`);

  // ---- channels ----
  const channels = obj(config.channels) ?? {};
  const enabled: string[] = [];
  const gw = ['gateway'];
  const tg = obj(channels.telegram);
  if (tg && tg.enabled !== false) {
    const found = credential(tg.botToken, 'openclaw.json', 'channels.telegram.botToken') ?? env.get('TELEGRAM_BOT_TOKEN');
    if (str(tg.tokenFile))
      notImported.push(`channels.telegram.tokenFile: the file it names was not read; store its token as telegram_bot_token`);
    if (
      addSecret(
        {
          name: 'telegram_bot_token',
          what: 'Telegram bot token',
          hosts: ['api.telegram.org'],
          placement: 'path',
          field: '',
          principals: gw,
        },
        found,
      )
    )
      enabled.push('telegram');
  }
  const dc = obj(channels.discord);
  if (dc && dc.enabled !== false) {
    const found = credential(dc.token, 'openclaw.json', 'channels.discord.token') ?? env.get('DISCORD_BOT_TOKEN');
    if (
      addSecret(
        {
          name: 'discord_bot_token',
          what: 'Discord bot token (REST)',
          hosts: ['discord.com'],
          placement: 'header',
          field: 'authorization',
          principals: gw,
        },
        found,
      )
    ) {
      // The Discord Gateway's IDENTIFY frame takes the same token under a placement of its own.
      addSecret(
        {
          name: 'discord_gateway_token',
          what: 'Discord bot token (Gateway IDENTIFY)',
          hosts: ['gateway.discord.gg', '*.discord.gg'],
          placement: 'frame',
          field: '',
          principals: gw,
        },
        found,
      );
      enabled.push('discord');
    }
  }
  const sl = obj(channels.slack);
  if (sl && sl.enabled !== false) {
    const bot = credential(sl.botToken, 'openclaw.json', 'channels.slack.botToken') ?? env.get('SLACK_BOT_TOKEN');
    const app = credential(sl.appToken, 'openclaw.json', 'channels.slack.appToken') ?? env.get('SLACK_APP_TOKEN');
    const signing = credential(sl.signingSecret, 'openclaw.json', 'channels.slack.signingSecret');
    const hasBot = addSecret(
      { name: 'slack_bot_token', what: 'Slack bot token', hosts: ['slack.com'], placement: 'bearer', field: '', principals: gw },
      bot,
    );
    const hasApp = addSecret(
      {
        name: 'slack_app_token',
        what: 'Slack app-level token (Socket Mode)',
        hosts: ['slack.com'],
        placement: 'bearer',
        field: '',
        principals: gw,
      },
      app,
    );
    const hasSigning = addSecret(
      { name: 'slack_signing_secret', what: 'Slack signing secret', hosts: [], placement: 'verify', field: '', principals: gw },
      signing,
    );
    if (hasBot && (hasApp || hasSigning)) {
      enabled.push('slack');
      if (!hasApp) settings.push('GATEWAY_SLACK_MODE=events');
    } else if (hasBot || hasApp)
      notImported.push(
        'channel slack: needs the bot token and the app token (Socket Mode) or signing secret; enable it once both are stored',
      );
  }
  for (const name of Object.keys(channels)) {
    if (['telegram', 'discord', 'slack', 'defaults', 'modelByChannel'].includes(name)) continue;
    notImported.push(`channel ${name}: Talon has no ${name} channel yet`);
  }
  if (Object.keys(channels).some((c) => ['telegram', 'discord', 'slack'].includes(c)))
    notImported.push(
      'channel allow-lists and DM policies (allowFrom, dmPolicy, groups): Talon admits a chat account once an operator approves its pairing (talon pairing approve)',
    );
  if (enabled.length > 0) settings.push(`TALON_CHANNELS=${enabled.join(',')}`);

  const gatewayToken = obj(obj(config.gateway)?.auth)?.token;
  if (str(gatewayToken) || obj(gatewayToken)) {
    notImported.push("gateway.auth.token: OpenClaw's own API token; create Talon API tokens with talon token create");
    credentialFiles.add('openclaw.json');
  }
  for (const [k, v] of env) {
    if (!/(KEY|TOKEN|SECRET|PASSWORD)/.test(k)) continue;
    const used = secrets.some((s) => s.from === v.from);
    if (!used) notImported.push(`${k} from ${v.from.replace(/ \(.*$/, '')}: nothing imported uses it`);
    credentialFiles.add(v.from.replace(/ \(.*$/, ''));
  }
  if (files.texts.has('credentials/oauth.json')) {
    const legacy = obj(parseJson5(files.texts.get('credentials/oauth.json')!, 'credentials/oauth.json')) ?? {};
    const providers = Object.keys(legacy);
    if (providers.length > 0) {
      notImported.push(`OAuth logins in credentials/oauth.json (${providers.join(', ')}): subscription logins are not API keys`);
      credentialFiles.add('credentials/oauth.json');
    }
  }

  // ---- memory documents ----
  const ws = workspaceDir(config);
  const documents: PlannedDocument[] = [];
  const docFiles = [`${ws}/MEMORY.md`, `${ws}/USER.md`, ...[...files.texts.keys()].filter((f) => f.startsWith(`${ws}/memory/`)).sort()];
  for (const file of docFiles) {
    const content = files.texts.get(file);
    if (content === undefined) continue;
    if (content.trim() === '') {
      notImported.push(`${file}: empty`);
      continue;
    }
    const name = file.slice(ws.length + 1);
    documents.push({ key: docKey(name), title: `OpenClaw ${name}`, from: file, content });
  }
  if (documents.length > 0 && !opts.user) {
    notImported.push(`memory documents (${documents.map((d) => d.from).join(', ')}): give --user NAME to import them for a Talon user`);
    documents.length = 0;
  }
  const persona = WORKSPACE_PERSONA.map((n) => `${ws}/${n}`).filter((f) => files.texts.has(f));
  if (persona.length > 0)
    notImported.push(
      `agent instructions (${persona.join(', ')}): Talon keeps no per-agent prompt files; copy what matters into your own system prompt`,
    );

  // ---- skills ----
  for (const dir of files.skillDirs) {
    notImported.push(
      `skill ${skillName(files.texts.get(`${dir}/SKILL.md`), dir)} (${dir}): not a signed WASM skill (see talon skills new)`,
    );
  }

  return {
    settings,
    models: modelLinesOut,
    secrets,
    values,
    documents,
    notImported,
    filesRead: [...files.texts.keys()].sort(),
    credentialFiles: [...credentialFiles].filter((f) => files.texts.has(f)).sort(),
    unreadCredentialFiles: [...files.unread].sort(),
  };
}

/** The proto placement of a planned secret (verify keys have none). */
export function placementOf(s: PlannedSecret): Placement | undefined {
  return s.placement === 'verify' ? undefined : PLACEMENT_BY_NAME[s.placement];
}
