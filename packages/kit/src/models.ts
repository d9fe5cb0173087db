// The models a deployment offers: each public name (what an OpenAI client puts in
// `model`, what /v1/models lists) maps to an ordered list of provider targets — the
// orchestrator tries them in order, failing over on 429/5xx/timeouts. Parsed once here
// for every reader: the gateway (names), the orchestrator (targets), egress (hosts to
// allow) and `talon up` (keys to bind). Without TALON_LLM_MODELS the one model is built
// from the older TALON_LLM_* variables, so existing deployments run unchanged.
import { isAbsolute } from 'node:path';
import { readFileSync } from 'node:fs';
import { ConfigFieldError, oneOf, str, url, type ConfigOf, type Field } from './config.ts';
import { isSecretName, SECRET_NAME_PATTERN, SECRET_NAME_RULE } from './contracts.ts';
import { TalonError } from './errors.ts';

export const LLM_WIRE_FORMATS = ['openai', 'anthropic'] as const;
export type LlmWireFormat = (typeof LLM_WIRE_FORMATS)[number];

/** A public model name: what clients send and /v1/models lists. */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9._:/@+-]{1,128}$/;
const MODEL_NAME_RULE = '1-128 characters of letters, digits and ._:/@+-';
/** A target's label in metrics and logs (bounded: only configured labels exist). */
const LABEL_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
/** The model name sent upstream: the provider's own, only printable and unspaced. */
const UPSTREAM_MODEL_PATTERN = /^[\x21-\x7e]{1,256}$/;
/** Always names the default model (what /v1/models listed before models were configurable). */
export const DEFAULT_MODEL_ALIAS = 'talon';
const MAX_MODELS = 64;
const MAX_TARGETS = 8;

export interface ModelTarget {
  /** Metrics `provider` label and log name; the wire format unless configured. */
  label: string;
  format: LlmWireFormat;
  baseUrl: string;
  /** The model name sent to the provider. */
  model: string;
  /** Vault secret holding the API key, sent as `{{secret:NAME}}`; undefined: no auth (a local server). */
  keySecret: string | undefined;
}

export interface ModelEntry {
  name: string;
  /** Tried in order: the next one when the previous answers 429, 5xx, times out or cannot be reached. */
  targets: readonly ModelTarget[];
  /** Its providers accept image parts (`"vision": true`); the OpenAI API refuses images for other models. */
  vision?: boolean;
}

export interface ModelsConfig {
  /** In configured order; the first is the default. */
  models: readonly ModelEntry[];
  /** Where the list came from, for logs: TALON_LLM_MODELS or the TALON_LLM_* variables. */
  source: 'TALON_LLM_MODELS' | 'TALON_LLM_*';
}

/** A problem in a models document, its message naming the place (`models[1].targets[0].base_url`). */
export class ModelsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelsError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, allowed: readonly string[], at: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k))
      throw new ModelsError(`${at} has an unknown field ${JSON.stringify(k.slice(0, 40))} (fields: ${allowed.join(', ')})`);
  }
}

function baseUrlProblem(v: string): string | undefined {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return 'must be an absolute http:// or https:// URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an absolute http:// or https:// URL';
  if (u.username || u.password) return 'must not carry credentials (the key is a vault secret: set "key")';
  if (u.search || u.hash) return 'must have no query or fragment';
  return undefined;
}

function parseTarget(raw: unknown, at: string): ModelTarget {
  if (!isObject(raw)) throw new ModelsError(`${at} must be an object {"provider","base_url","model","key"}`);
  onlyKeys(raw, ['provider', 'base_url', 'model', 'key', 'label'], at);
  const { provider, base_url: baseUrl, model, key, label } = raw;
  if (typeof provider !== 'string' || !LLM_WIRE_FORMATS.includes(provider as LlmWireFormat)) {
    throw new ModelsError(`${at}.provider must be one of ${LLM_WIRE_FORMATS.join(', ')}`);
  }
  if (typeof baseUrl !== 'string') throw new ModelsError(`${at}.base_url is required: the provider's API base URL`);
  const problem = baseUrlProblem(baseUrl);
  if (problem) throw new ModelsError(`${at}.base_url ${problem}`);
  if (typeof model !== 'string' || !UPSTREAM_MODEL_PATTERN.test(model)) {
    throw new ModelsError(`${at}.model must be the provider's model name (1-256 printable characters, no spaces)`);
  }
  if (typeof key !== 'string' || (key !== 'none' && !isSecretName(key))) {
    throw new ModelsError(`${at}.key must name the vault secret holding the API key (${SECRET_NAME_RULE}), or be "none"`);
  }
  if (label !== undefined && (typeof label !== 'string' || !LABEL_PATTERN.test(label))) {
    throw new ModelsError(`${at}.label must be 1-64 characters of a-z, 0-9 and _.- (starting with a letter or digit)`);
  }
  return {
    label: typeof label === 'string' ? label : provider,
    format: provider as LlmWireFormat,
    baseUrl,
    model,
    keySecret: key === 'none' ? undefined : key,
  };
}

function parseEntry(raw: unknown, at: string): ModelEntry {
  if (!isObject(raw)) throw new ModelsError(`${at} must be an object {"name","targets"}`);
  onlyKeys(raw, ['name', 'targets', 'vision'], at);
  const { name, targets, vision } = raw;
  if (vision !== undefined && typeof vision !== 'boolean') throw new ModelsError(`${at}.vision must be true or false`);
  if (typeof name !== 'string' || !MODEL_NAME_PATTERN.test(name)) throw new ModelsError(`${at}.name must be ${MODEL_NAME_RULE}`);
  if (!Array.isArray(targets) || targets.length === 0 || targets.length > MAX_TARGETS) {
    throw new ModelsError(`${at}.targets must be a list of 1 to ${MAX_TARGETS} providers, tried in order`);
  }
  const parsed = targets.map((t, i) => parseTarget(t, `${at}.targets[${i}]`));
  const labels = new Set<string>();
  for (const [i, t] of parsed.entries()) {
    if (labels.has(t.label)) {
      throw new ModelsError(
        `${at}.targets[${i}] has the label ${t.label} of an earlier target; give each target of a model its own "label"`,
      );
    }
    labels.add(t.label);
  }
  return { name, targets: parsed, ...(vision === true ? { vision: true } : {}) };
}

/** The one placement a key takes with each wire format (a vault secret is bound to one placement). */
export const KEY_PLACEMENT: Readonly<Record<LlmWireFormat, { header: string; cli: string }>> = {
  openai: { header: 'Authorization: Bearer', cli: '--bearer' },
  anthropic: { header: 'x-api-key', cli: '--header x-api-key' },
};

/** A key used by targets of different wire formats would need two placements: refused. */
function checkKeyPlacements(models: readonly ModelEntry[]): void {
  const seen = new Map<string, { format: LlmWireFormat; at: string }>();
  for (const [m, e] of models.entries()) {
    for (const [t, target] of e.targets.entries()) {
      if (!target.keySecret) continue;
      const at = `models[${m}].targets[${t}]`;
      const first = seen.get(target.keySecret);
      if (!first) seen.set(target.keySecret, { format: target.format, at });
      else if (first.format !== target.format) {
        throw new ModelsError(
          `${at} uses key ${target.keySecret} with provider ${target.format} (${KEY_PLACEMENT[target.format].header}) but ${first.at} uses it with ${first.format} (${KEY_PLACEMENT[first.format].header}); a secret has one placement: use a separate secret`,
        );
      }
    }
  }
}

/** Parses and checks a models document (JSON); throws ModelsError naming the first problem's place. */
export function parseModels(text: string): ModelEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ModelsError(`is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(doc) || doc.length === 0 || doc.length > MAX_MODELS) {
    throw new ModelsError(`must be a JSON list of 1 to ${MAX_MODELS} models [{"name":…,"targets":[…]}]`);
  }
  const models = doc.map((e, i) => parseEntry(e, `models[${i}]`));
  const names = new Set<string>();
  for (const [i, e] of models.entries()) {
    if (names.has(e.name)) throw new ModelsError(`models[${i}].name ${e.name} is used by an earlier model; names must be unique`);
    names.add(e.name);
  }
  checkKeyPlacements(models);
  return models;
}

const MODELS_KEY = 'TALON_LLM_MODELS';
const MODELS_EXPECT =
  'a JSON list [{"name":"fast","targets":[{"provider":"openai","base_url":"https://api.openai.com/v1","model":"gpt-4o-mini","key":"llm_api_key"}]}], or the absolute path of a file holding it';

/** TALON_LLM_MODELS: the list inline (it starts with `[`) or an absolute path to a JSON file. */
function modelsField(): Field<ModelEntry[] | undefined> {
  return {
    key: MODELS_KEY,
    doc:
      'Models offered by name, each an ordered list of providers tried in turn (the next on 429, 5xx, a timeout or a connection error; never on other 4xx), as JSON ' +
      '[{"name":"fast","vision":false,"targets":[{"provider":"openai|anthropic","base_url":"https://…","model":"<upstream name>","key":"<vault secret>|none","label":"<metrics label, default the provider>"}, …]}, …] ' +
      'or the absolute path of a file holding it. "vision": true lets OpenAI API requests send it image parts (default false: refused with 400 model_not_vision_capable). The first model is the default; "talon" also names it. Unset: one model from TALON_LLM_PROVIDER, _BASE_URL, _MODEL and _API_KEY_SECRET, named after TALON_LLM_MODEL.',
    defaultText: undefined,
    secret: false,
    parse(raw) {
      const value = raw?.trim() ?? '';
      if (value === '') return undefined;
      let text = value;
      if (!value.startsWith('[')) {
        if (!isAbsolute(value))
          throw new ConfigFieldError(MODELS_KEY, 'is neither a JSON list nor an absolute file path', `Set it to ${MODELS_EXPECT}`);
        try {
          text = readFileSync(value, 'utf8');
        } catch {
          throw new ConfigFieldError(MODELS_KEY, `cannot read ${value}`, 'Point it at a readable JSON file or set the list inline');
        }
      }
      try {
        return parseModels(text);
      } catch (err) {
        if (!(err instanceof ModelsError)) throw err;
        throw new ConfigFieldError(MODELS_KEY, err.message, `Set it to ${MODELS_EXPECT}`);
      }
    },
  };
}

/** The fields every reader of the models spreads into its config spec (one declaration, one doc). */
export function llmModelFields() {
  return {
    llmModels: modelsField(),
    llmProvider: oneOf('TALON_LLM_PROVIDER', LLM_WIRE_FORMATS, {
      doc: 'Without TALON_LLM_MODELS: LLM wire format, openai (any OpenAI-compatible server) or anthropic.',
      default: 'openai',
    }),
    llmBaseUrl: url('TALON_LLM_BASE_URL', {
      doc: 'Without TALON_LLM_MODELS: base URL of the LLM API (OpenAI-compatible or Anthropic).',
      default: 'https://api.openai.com/v1',
    }),
    llmModel: str('TALON_LLM_MODEL', {
      doc: 'Without TALON_LLM_MODELS: model name sent to the provider, also the public name clients use (and "talon").',
      default: 'gpt-4o-mini',
      pattern: MODEL_NAME_PATTERN,
      expect: `a model name (${MODEL_NAME_RULE})`,
    }),
    llmKeySecret: str('TALON_LLM_API_KEY_SECRET', {
      doc: 'Without TALON_LLM_MODELS: vault secret holding the LLM API key (sent as a placeholder egress fills in); "none" for servers without auth such as a local Ollama.',
      default: 'llm_api_key',
      pattern: SECRET_NAME_PATTERN,
    }),
  } satisfies Record<string, Field<unknown>>;
}

export type LlmModelSettings = ConfigOf<ReturnType<typeof llmModelFields>>;

/** The deployment's models: TALON_LLM_MODELS, or the one model of the TALON_LLM_* variables. */
export function modelsConfig(cfg: LlmModelSettings): ModelsConfig {
  if (cfg.llmModels) return { models: cfg.llmModels, source: 'TALON_LLM_MODELS' };
  return {
    source: 'TALON_LLM_*',
    models: [
      {
        name: cfg.llmModel,
        targets: [
          {
            label: cfg.llmProvider,
            format: cfg.llmProvider,
            baseUrl: cfg.llmBaseUrl,
            model: cfg.llmModel,
            keySecret: cfg.llmKeySecret === 'none' ? undefined : cfg.llmKeySecret,
          },
        ],
      },
    ],
  };
}

export function defaultModel(cfg: ModelsConfig): ModelEntry {
  return cfg.models[0]!;
}

/** The model a request names: '' or "talon" the default (unless a model is called so), else by exact name. */
export function resolveModel(cfg: ModelsConfig, requested: string): ModelEntry | undefined {
  if (requested === '') return defaultModel(cfg);
  return cfg.models.find((m) => m.name === requested) ?? (requested === DEFAULT_MODEL_ALIAS ? defaultModel(cfg) : undefined);
}

/** OpenAI's answer to an unknown model (404 model_not_found); the name is echoed only when it is a well-formed one. */
export function modelNotFound(cfg: ModelsConfig, requested: string): TalonError {
  const named = MODEL_NAME_PATTERN.test(requested) ? `The model \`${requested}\`` : 'The model named in the request';
  const offered = cfg.models.map((m) => m.name).join(', ');
  return new TalonError('model_not_found', `${named} does not exist; this deployment offers ${offered} (GET /v1/models)`);
}

/** Every provider base URL, once each (egress allows the orchestrator to reach their hosts). */
export function providerBaseUrls(cfg: ModelsConfig): string[] {
  return [...new Set(cfg.models.flatMap((m) => m.targets.map((t) => t.baseUrl)))];
}

/** Each key secret with the hosts it must be bound to and its placement (for `talon secrets set`). */
export function keyBindings(cfg: ModelsConfig): Array<{ secret: string; hosts: string[]; format: LlmWireFormat }> {
  const out = new Map<string, { secret: string; hosts: string[]; format: LlmWireFormat }>();
  for (const t of cfg.models.flatMap((m) => m.targets)) {
    if (!t.keySecret) continue;
    const host = new URL(t.baseUrl).host;
    const b = out.get(t.keySecret) ?? { secret: t.keySecret, hosts: [], format: t.format };
    if (!b.hosts.includes(host)) b.hosts.push(host);
    out.set(t.keySecret, b);
  }
  return [...out.values()];
}
