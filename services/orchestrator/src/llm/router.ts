// The deployment's models (TALON_LLM_MODELS, @talon/kit/models): a turn names one (or
// none: the default), and its providers are tried in order — each through egress with
// its own key placeholder — until one answers or the failure is not one to fail over
// on (failover.ts).
import type { Logger } from '@talon/kit/log';
import { defaultModel, modelNotFound, resolveModel, type ModelsConfig, type ModelTarget } from '@talon/kit/models';
import type { CompletionClient } from '../agent-loop.ts';
import { llmOutcome } from '../metrics.ts';
import type { LlmClient } from './client.ts';
import { failsOver } from './failover.ts';
import type { LlmRequest, LlmResult } from './types.ts';

/** A model a turn asked for: its public name and a client that fails over between its providers. */
export interface SelectedModel extends CompletionClient {
  readonly name: string;
}

export interface ModelSelector {
  /** The name of the model a turn naming none gets. */
  readonly defaultModel: string;
  /** The model named by a turn ('' or "talon": the default); a model_not_found TalonError when there is none. */
  select(requested: string): SelectedModel;
  /**
   * An agent's chain (talon agents): the providers of each named model in order, as one
   * failover client answering as `name`; a model_not_found TalonError for an unknown model.
   */
  chain(name: string, models: readonly string[]): SelectedModel;
}

export type ProviderClient = Pick<LlmClient, 'complete' | 'label' | 'model'>;

/** One model's providers in order: the first that answers wins. */
export class FailoverClient implements SelectedModel {
  readonly name: string;
  private readonly providers: readonly ProviderClient[];
  private readonly log: Pick<Logger, 'info' | 'warn'>;

  constructor(name: string, providers: readonly ProviderClient[], log: Pick<Logger, 'info' | 'warn'>) {
    if (providers.length === 0) throw new Error(`model ${name} has no provider`);
    this.name = name;
    this.providers = providers;
    this.log = log;
  }

  async complete(req: Omit<LlmRequest, 'model'>, onDelta?: (delta: string) => void, signal?: AbortSignal): Promise<LlmResult> {
    for (let i = 0; ; i++) {
      const p = this.providers[i]!;
      let streamed = false;
      const relay = onDelta
        ? (d: string) => {
            if (d !== '') streamed = true;
            onDelta(d);
          }
        : undefined;
      try {
        const res = await p.complete(req, relay, signal);
        if (i > 0)
          this.log.info(
            { model: this.name, provider: p.label, upstream_model: p.model, attempt: i + 1 },
            'answered by a fallback provider',
          );
        return { ...res, provider: p.label };
      } catch (err) {
        const next = this.providers[i + 1];
        if (!next || !failsOver(err, { streamed, aborted: signal?.aborted ?? false })) throw err;
        // The outcome class only (rate_limited, server_error, timeout…): never the provider's words.
        this.log.warn(
          { model: this.name, provider: p.label, outcome: llmOutcome(err), next: next.label },
          'LLM provider failed; trying the next one',
        );
      }
    }
  }
}

export class ModelRouter implements ModelSelector {
  readonly defaultModel: string;
  private readonly cfg: ModelsConfig;
  private readonly byName: ReadonlyMap<string, FailoverClient>;
  private readonly providers: ReadonlyMap<string, readonly ProviderClient[]>;
  private readonly chains = new Map<string, FailoverClient>();
  private readonly log: Pick<Logger, 'info' | 'warn'>;

  constructor(cfg: ModelsConfig, client: (target: ModelTarget) => ProviderClient, log: Pick<Logger, 'info' | 'warn'>) {
    this.cfg = cfg;
    this.log = log;
    this.defaultModel = defaultModel(cfg).name;
    this.providers = new Map(cfg.models.map((m) => [m.name, m.targets.map(client)]));
    this.byName = new Map(cfg.models.map((m) => [m.name, new FailoverClient(m.name, this.providers.get(m.name)!, log)]));
  }

  chain(name: string, models: readonly string[]): SelectedModel {
    const key = JSON.stringify([name, ...models]);
    const known = this.chains.get(key);
    if (known) return known;
    const providers = models.flatMap((m) => {
      const entry = resolveModel(this.cfg, m);
      if (!entry) throw modelNotFound(this.cfg, m);
      return this.providers.get(entry.name)!;
    });
    const c = new FailoverClient(name, providers, this.log);
    if (this.chains.size > 256) this.chains.clear();
    this.chains.set(key, c);
    return c;
  }

  select(requested: string): SelectedModel {
    const entry = resolveModel(this.cfg, requested);
    if (!entry) throw modelNotFound(this.cfg, requested);
    return this.byName.get(entry.name)!;
  }
}

/** One client for a turn engine with a single model (tests, benchmarks): every name resolves to it. */
export function singleModel(llm: CompletionClient, name = 'test-model'): ModelSelector {
  const selected: SelectedModel = { name, complete: (req, onDelta, signal) => llm.complete(req, onDelta, signal) };
  return { defaultModel: name, select: () => selected, chain: () => selected };
}
