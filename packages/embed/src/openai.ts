// An OpenAI-compatible /v1/embeddings provider (OpenAI, Azure-compatible gateways,
// Ollama, vLLM, llama.cpp, LM Studio...). It is called only through egress: the
// request carries the placeholder {{secret:<name>}} and egress fills in the key,
// so the caller (the orchestrator) never sees it.
import { scrub } from '@talon/kit/log';
import type { EgressRequest, EgressResponse } from '@talon/kit/egress';
import { EmbeddingError, l2normalize, type Embedder } from './types.ts';

/** What the embedder needs from EgressClient (also lets tests use a loopback fake). */
export interface HttpTransport {
  request(req: EgressRequest): Promise<Pick<EgressResponse, 'status' | 'body'>>;
}

export interface OpenAiEmbedderOptions {
  transport: HttpTransport;
  /** Base URL up to the API version, e.g. https://api.openai.com/v1 (…/embeddings is appended). */
  baseUrl: string;
  model: string;
  dim: number;
  /** Vault secret holding the API key; undefined for servers without auth (local Ollama). */
  apiKeySecret: string | undefined;
  /** Texts per request (providers cap the batch; OpenAI allows 2048). */
  batchSize?: number;
  timeoutMs?: number;
  /** Ask the provider for `dim` dimensions (only text-embedding-3* and compatible servers support it). */
  requestDimensions?: boolean;
  /** Inputs are cut to this many characters (providers refuse over-long input). */
  maxInputChars?: number;
}

interface EmbeddingsResponse {
  data?: Array<{ index?: number; embedding?: unknown }>;
}

function detail(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: string } | string; message?: string };
    const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message);
    if (m) return scrub(m).slice(0, 300);
  } catch {
    /* not JSON */
  }
  return scrub(text).slice(0, 300);
}

export class OpenAiEmbedder implements Embedder {
  readonly model: string;
  readonly dim: number;
  readonly local = false;
  private readonly transport: HttpTransport;
  private readonly baseUrl: string;
  private readonly apiKeySecret: string | undefined;
  private readonly batchSize: number;
  private readonly timeoutMs: number;
  private readonly requestDimensions: boolean;
  private readonly maxInputChars: number;

  constructor(opts: OpenAiEmbedderOptions) {
    this.model = opts.model;
    this.dim = opts.dim;
    this.transport = opts.transport;
    this.baseUrl = opts.baseUrl;
    this.apiKeySecret = opts.apiKeySecret;
    this.batchSize = opts.batchSize ?? 64;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.requestDimensions = opts.requestDimensions ?? /^text-embedding-3/.test(opts.model);
    this.maxInputChars = opts.maxInputChars ?? 16_000;
  }

  get endpoint(): string {
    return `${this.baseUrl.replace(/\/+$/, '')}/embeddings`;
  }

  async embed(texts: readonly string[], signal?: AbortSignal, opts?: { user?: string }): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += this.batchSize) {
      out.push(...(await this.batch(texts.slice(i, i + this.batchSize), signal, opts?.user)));
    }
    return out;
  }

  private async batch(texts: readonly string[], signal?: AbortSignal, user?: string): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const input = texts.map((t) => (t.length > this.maxInputChars ? t.slice(0, this.maxInputChars) : t || ' '));
    const res = await this.transport.request({
      method: 'POST',
      url: this.endpoint,
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        ...(this.apiKeySecret ? { authorization: `Bearer {{secret:${this.apiKeySecret}}}` } : {}),
      },
      body: JSON.stringify({
        model: this.model,
        input,
        encoding_format: 'float',
        ...(this.requestDimensions ? { dimensions: this.dim } : {}),
      }),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      headersTimeoutMs: this.timeoutMs,
      bodyTimeoutMs: this.timeoutMs,
      ...(user ? { user } : {}),
    });
    const text = await res.body.text().catch(() => '');
    if (res.status >= 400) {
      const retryable = res.status === 408 || res.status === 409 || res.status === 429 || res.status >= 500;
      throw new EmbeddingError('upstream_error', `the embeddings provider answered HTTP ${res.status}: ${detail(text)}`, { retryable });
    }
    let json: EmbeddingsResponse;
    try {
      json = JSON.parse(text) as EmbeddingsResponse;
    } catch {
      throw new EmbeddingError('upstream_error', 'the embeddings provider returned a response that is not JSON', { retryable: true });
    }
    if (!Array.isArray(json.data) || json.data.length !== texts.length) {
      throw new EmbeddingError(
        'upstream_error',
        `the embeddings provider returned ${Array.isArray(json.data) ? json.data.length : 'no'} vectors for ${texts.length} inputs`,
      );
    }
    const vectors: Float32Array[] = new Array<Float32Array>(texts.length);
    json.data.forEach((d, pos) => {
      const idx = typeof d.index === 'number' ? d.index : pos;
      const e = d.embedding;
      if (!Array.isArray(e) || !e.every((x) => typeof x === 'number' && Number.isFinite(x)) || idx < 0 || idx >= texts.length) {
        throw new EmbeddingError(
          'upstream_error',
          'the embeddings provider returned a malformed vector (expected data[].embedding as numbers)',
        );
      }
      if (e.length !== this.dim) {
        throw new EmbeddingError(
          'upstream_error',
          `the embeddings provider returned ${e.length}-dimensional vectors for ${this.model}, but TALON_EMBEDDINGS_DIM is ${this.dim}; set TALON_EMBEDDINGS_DIM=${e.length}`,
        );
      }
      vectors[idx] = l2normalize(Float32Array.from(e as number[]));
    });
    for (let i = 0; i < vectors.length; i++) {
      if (!vectors[i]) throw new EmbeddingError('upstream_error', `the embeddings provider returned no vector for input ${i}`);
    }
    return vectors;
  }
}
