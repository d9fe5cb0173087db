// Embedding configuration shared by memory and the orchestrator: both must agree
// on the model and dimension, because memory stores them next to every vector and
// re-embeds rows that differ.
import { ConfigError, ConfigFieldError, int, oneOf, str, url, type Field } from '@talon/kit/config';
import { SECRET_NAME_PATTERN } from '@talon/kit/contracts';
import { HASHED_LEXICAL_MODEL, HashedLexicalEmbedder } from './hashed-lexical.ts';
import { OpenAiEmbedder, type HttpTransport } from './openai.ts';
import type { Embedder } from './types.ts';

export const EMBEDDING_PROVIDERS = ['local', 'openai'] as const;
export type EmbeddingProvider = (typeof EMBEDDING_PROVIDERS)[number];

/** pgvector's HNSW index accepts at most 2000 dimensions for `vector`. */
export const MAX_EMBEDDING_DIM = 2000;

/** Model and dimension: read by memory and the orchestrator (set them identically). */
export function embeddingModelFields() {
  return {
    embeddingsProvider: oneOf('TALON_EMBEDDINGS_PROVIDER', EMBEDDING_PROVIDERS, {
      doc: 'Embedding provider: local (hashed-lexical-v1, offline, computed by memory) or openai (any OpenAI-compatible /v1/embeddings server, called by the orchestrator through egress). Set identically for memory and orchestrator.',
      default: 'local',
    }),
    embeddingsModel: str('TALON_EMBEDDINGS_MODEL', {
      doc: `Embedding model name stored with every vector; changing it re-embeds stored memory in the background. The local provider has only ${HASHED_LEXICAL_MODEL}.`,
      default: HASHED_LEXICAL_MODEL,
      pattern: /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/,
      expect: 'a model name (letters, digits and ._:/-)',
    }),
    embeddingsDim: int('TALON_EMBEDDINGS_DIM', {
      doc: 'Embedding dimension; must match what the model returns. Changing it re-embeds stored memory in the background.',
      default: 384,
      min: 16,
      max: MAX_EMBEDDING_DIM,
    }),
  } satisfies Record<string, Field<unknown>>;
}

/**
 * Where a remote provider lives: read by the orchestrator only (memory never talks to
 * the outside), hence ORCHESTRATOR_*; the base URL is TALON_* because egress reads it
 * too, to let the orchestrator reach that host (docs/architecture.md, "Names").
 */
export function embeddingProviderFields() {
  return {
    embeddingsBaseUrl: url('TALON_EMBEDDINGS_BASE_URL', {
      doc: 'Base URL of the OpenAI-compatible embeddings API (…/embeddings is appended); egress must allow this host for the orchestrator.',
      default: 'https://api.openai.com/v1',
    }),
    embeddingsKeySecret: str('ORCHESTRATOR_EMBEDDINGS_API_KEY_SECRET', {
      doc: 'Vault secret holding the embeddings API key (sent as a placeholder egress fills in); "none" for servers without auth.',
      default: 'llm_api_key',
      pattern: SECRET_NAME_PATTERN,
    }),
    embeddingsTimeoutMs: int('ORCHESTRATOR_EMBEDDINGS_TIMEOUT_MS', {
      doc: 'Upper bound for one embeddings request.',
      default: 30_000,
      min: 500,
    }),
    embeddingsBatch: int('ORCHESTRATOR_EMBEDDINGS_BATCH', {
      doc: 'Texts per embeddings request (also the background re-embedding batch size).',
      default: 64,
      min: 1,
      max: 2048,
    }),
  } satisfies Record<string, Field<unknown>>;
}

export interface EmbeddingModelConfig {
  embeddingsProvider: EmbeddingProvider;
  embeddingsModel: string;
  embeddingsDim: number;
}

/** Cross-field check the per-field parser cannot do; throws a ConfigError naming the fix. */
export function checkEmbeddingConfig(service: string, cfg: EmbeddingModelConfig): void {
  if (cfg.embeddingsProvider === 'local' && cfg.embeddingsModel !== HASHED_LEXICAL_MODEL) {
    throw new ConfigError(service, [
      new ConfigFieldError(
        'TALON_EMBEDDINGS_MODEL',
        `the local provider has only ${HASHED_LEXICAL_MODEL}, got ${JSON.stringify(cfg.embeddingsModel)}`,
        `Unset TALON_EMBEDDINGS_MODEL, or set TALON_EMBEDDINGS_PROVIDER=openai for a remote model`,
      ),
    ]);
  }
  if (cfg.embeddingsProvider === 'openai' && cfg.embeddingsModel === HASHED_LEXICAL_MODEL) {
    throw new ConfigError(service, [
      new ConfigFieldError(
        'TALON_EMBEDDINGS_MODEL',
        `${HASHED_LEXICAL_MODEL} is the local embedder, not a model of an OpenAI-compatible server`,
        'Set TALON_EMBEDDINGS_MODEL to the remote model (e.g. text-embedding-3-small) or TALON_EMBEDDINGS_PROVIDER=local',
      ),
    ]);
  }
}

/** The local embedder when configured; undefined when a remote provider is configured. */
export function localEmbedder(cfg: EmbeddingModelConfig): Embedder | undefined {
  return cfg.embeddingsProvider === 'local' ? new HashedLexicalEmbedder(cfg.embeddingsDim) : undefined;
}

export function remoteEmbedder(
  cfg: EmbeddingModelConfig & {
    embeddingsBaseUrl: string;
    embeddingsKeySecret: string;
    embeddingsTimeoutMs: number;
    embeddingsBatch: number;
  },
  transport: HttpTransport,
): Embedder | undefined {
  if (cfg.embeddingsProvider !== 'openai') return undefined;
  return new OpenAiEmbedder({
    transport,
    baseUrl: cfg.embeddingsBaseUrl,
    model: cfg.embeddingsModel,
    dim: cfg.embeddingsDim,
    apiKeySecret: cfg.embeddingsKeySecret === 'none' ? undefined : cfg.embeddingsKeySecret,
    timeoutMs: cfg.embeddingsTimeoutMs,
    batchSize: cfg.embeddingsBatch,
  });
}
