// The embedding provider interface shared by memory (local embedder) and the
// orchestrator (remote embedders reached through egress).
import { TalonError, type ErrorCode } from '@talon/kit/errors';

export interface Embedder {
  /** Stored next to every vector; a different model or dimension means re-embedding. */
  readonly model: string;
  readonly dim: number;
  /** True when the embedder needs no network (memory computes it itself). */
  readonly local: boolean;
  /** One L2-normalised vector of length `dim` per text, in input order. */
  /** `opts.user`: the Talon user the texts are embedded for (a turn's recall), told to egress for its record. */
  embed(texts: readonly string[], signal?: AbortSignal, opts?: { user?: string }): Promise<Float32Array[]>;
}

/** An embedding provider failed or answered something unusable. */
export class EmbeddingError extends TalonError {
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EmbeddingError';
    this.retryable = opts.retryable ?? false;
  }
}

/** Scales `v` in place to unit length (a zero vector stays zero). */
export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  if (s > 0) {
    const k = 1 / Math.sqrt(s);
    for (let i = 0; i < v.length; i++) v[i] = v[i]! * k;
  }
  return v;
}

/** Dot product (cosine similarity for unit vectors). */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) s += a[i]! * b[i]!;
  return s;
}
