// Token-bucket rate limits keyed by client address or token hash. Pure (the
// clock is injected). Memory is bounded: the least recently touched keys are
// dropped first, and a dropped key starts again with a full bucket, which only
// ever errs towards letting a client through once.

export interface Limit {
  /** Requests allowed per minute; also the burst size. */
  perMinute: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly capacity: number;
  private readonly refillPerMs: number;
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(limit: Limit, opts: { maxKeys?: number; now?: () => number } = {}) {
    this.capacity = limit.perMinute;
    this.refillPerMs = limit.perMinute / 60_000;
    this.maxKeys = opts.maxKeys ?? 100_000;
    this.now = opts.now ?? Date.now;
  }

  private bucket(key: string): Bucket {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key);
      b.tokens = Math.min(this.capacity, b.tokens + (t - b.at) * this.refillPerMs);
      b.at = t;
    } else {
      b = { tokens: this.capacity, at: t };
      if (this.buckets.size >= this.maxKeys) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
    }
    this.buckets.set(key, b);
    return b;
  }

  /** Takes `cost` tokens; false (and nothing taken) when there are not enough. */
  take(key: string, cost = 1): boolean {
    const b = this.bucket(key);
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }

  /** True when at least one token is left, without taking it. */
  has(key: string): boolean {
    return this.bucket(key).tokens >= 1;
  }

  /** Seconds until one token is available (for Retry-After). */
  retryAfterS(key: string): number {
    const b = this.bucket(key);
    if (b.tokens >= 1) return 0;
    return Math.max(1, Math.ceil((1 - b.tokens) / this.refillPerMs / 1000));
  }

  get size(): number {
    return this.buckets.size;
  }
}
