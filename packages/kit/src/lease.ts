// A leader lease in a NATS KV bucket: at most one holder per key across processes (one
// Telegram poller per bot across gateway replicas, one runner of a routine…).
//
// The key holds {owner, ttlMs}. A candidate takes a free key with `create` (fails when
// someone holds it) and a stale one with `update` on the revision it saw (compare and
// set). No wall clock is compared across machines: a lease is stale when its revision has
// not changed for `ttlMs` on the observer's own monotonic clock, and a holder considers
// itself the leader only until `ttlMs` (less a margin) after it *sent* its last successful
// renewal — so it steps down before any observer can see the lease as stale. A renewal refused because the
// revision moved (another holder took it) loses leadership at once; one that fails for
// another reason (NATS away) is retried until the lease would run out.
import type { KV, KvEntry } from '@nats-io/kv';
import type { Logger } from './log.ts';

export interface LeaseOptions {
  /** An open bucket the caller may read and write (the key must match its subject rights). */
  kv: KV;
  /** The lease's key, e.g. `telegram.poller.<bot>`. */
  key: string;
  /** This holder's id, unique per process (instance name plus a random part). */
  owner: string;
  /** How long a lease lives without renewal. */
  ttlMs: number;
  /** How often the holder renews and a candidate looks (default ttlMs / 3). */
  intervalMs?: number;
  log?: Logger;
  /** Monotonic milliseconds (tests). */
  now?: () => number;
}

interface LeaseValue {
  owner: string;
  ttlMs: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The holder named by an entry, or undefined when the key is free (deleted, purged, empty or unreadable). */
export function leaseHolder(e: KvEntry | null | undefined): string | undefined {
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
  try {
    const v = JSON.parse(dec.decode(e.value)) as Partial<LeaseValue>;
    return typeof v.owner === 'string' ? v.owner : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a candidate does after looking at the key: take it when free or stale, else wait.
 * `seen` is the revision it watched and since when (its monotonic clock); pure.
 */
export function candidateStep(
  entry: { revision: number; holder: string | undefined } | null,
  seen: { revision: number; since: number } | undefined,
  now: number,
  ttlMs: number,
): { action: 'create' } | { action: 'take'; revision: number } | { action: 'wait'; seen: { revision: number; since: number } } {
  if (!entry) return { action: 'create' };
  if (entry.holder === undefined) return { action: 'take', revision: entry.revision };
  if (!seen || seen.revision !== entry.revision) return { action: 'wait', seen: { revision: entry.revision, since: now } };
  if (now - seen.since >= ttlMs) return { action: 'take', revision: entry.revision };
  return { action: 'wait', seen };
}

/** JetStream's refusal of a compare-and-set whose expected revision is not the last one. */
export function isRevisionConflict(err: unknown): boolean {
  return /wrong last sequence|key exists/i.test(String((err as Error)?.message));
}

export class Lease {
  private readonly kv: KV;
  readonly key: string;
  readonly owner: string;
  private readonly ttlMs: number;
  private readonly intervalMs: number;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private revision = 0;
  private validUntil = 0;
  /** Stepping down this much before the lease's end absorbs timer lateness (a fifth of the ttl). */
  private readonly marginMs: number;
  /** Successful renewals in the current term (tests, diagnostics). */
  renewals = 0;
  private term: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Ends the term at `validUntil` even while a renewal hangs (NATS away). */
  private expiry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: LeaseOptions) {
    if (!(opts.ttlMs >= 100)) throw new Error('a lease needs ttlMs of at least 100');
    this.kv = opts.kv;
    this.key = opts.key;
    this.owner = opts.owner;
    this.ttlMs = opts.ttlMs;
    this.marginMs = Math.floor(opts.ttlMs / 5);
    this.intervalMs = Math.max(10, Math.min(opts.intervalMs ?? Math.floor(opts.ttlMs / 3), Math.floor(opts.ttlMs / 2)));
    this.log = opts.log;
    this.now = opts.now ?? (() => performance.now());
  }

  /** True while this process holds the lease. */
  get isLeader(): boolean {
    return this.term !== undefined && !this.term.signal.aborted && this.now() < this.validUntil;
  }

  private value(): Uint8Array {
    return enc.encode(JSON.stringify({ owner: this.owner, ttlMs: this.ttlMs } satisfies LeaseValue));
  }

  /**
   * Waits until this process holds the lease; resolves with a signal that aborts when
   * leadership is lost (renewal refused or timed out) or released. Rejects when `signal`
   * aborts first. NATS errors while waiting are retried at the interval.
   */
  async acquire(signal?: AbortSignal): Promise<AbortSignal> {
    if (this.term && !this.term.signal.aborted) return this.term.signal;
    this.stopped = false;
    let seen: { revision: number; since: number } | undefined;
    for (;;) {
      signal?.throwIfAborted();
      const t0 = this.now();
      try {
        const e = await this.kv.get(this.key);
        const step = candidateStep(e ? { revision: e.revision, holder: leaseHolder(e) } : null, seen, t0, this.ttlMs);
        if (step.action === 'wait') seen = step.seen;
        else {
          const rev =
            step.action === 'create'
              ? await this.kv.create(this.key, this.value())
              : await this.kv.update(this.key, this.value(), step.revision);
          return this.begin(rev, t0);
        }
      } catch (err) {
        // Lost a race (someone created or took it first) or NATS is away: look again later.
        if (!isRevisionConflict(err)) this.log?.debug({ key: this.key, err: (err as Error).message }, 'lease: could not read or take');
        seen = undefined;
      }
      await delay(this.intervalMs, signal);
    }
  }

  private begin(revision: number, sentAt: number): AbortSignal {
    this.revision = revision;
    this.validUntil = sentAt + this.ttlMs - this.marginMs;
    this.renewals = 0;
    this.term = new AbortController();
    this.log?.info({ key: this.key, owner: this.owner }, 'lease acquired');
    this.armExpiry();
    this.schedule();
    return this.term.signal;
  }

  private armExpiry(): void {
    clearTimeout(this.expiry);
    this.expiry = setTimeout(() => this.lose('the lease ran out before it could be renewed'), Math.max(0, this.validUntil - this.now()));
    this.expiry.unref();
  }

  private schedule(): void {
    if (this.stopped || !this.term || this.term.signal.aborted) return;
    const untilExpiry = this.validUntil - this.now();
    this.timer = setTimeout(() => void this.renew(), Math.max(0, Math.min(this.intervalMs, untilExpiry)));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (!this.term || this.term.signal.aborted || this.stopped) return;
    const t0 = this.now();
    if (t0 >= this.validUntil) return this.lose('the lease ran out before it could be renewed');
    try {
      const rev = await this.kv.update(this.key, this.value(), this.revision);
      // A release or loss that happened while the renewal was in flight wins.
      if (this.stopped) await this.kv.delete(this.key, { previousSeq: rev }).catch(() => undefined);
      if (!this.term || this.term.signal.aborted || this.stopped) return;
      this.revision = rev;
      this.validUntil = t0 + this.ttlMs - this.marginMs;
      this.renewals += 1;
      this.armExpiry();
    } catch (err) {
      if (isRevisionConflict(err)) return this.lose('another holder took the lease');
      if (this.now() >= this.validUntil) return this.lose(`the lease could not be renewed (${(err as Error).message})`);
    }
    this.schedule();
  }

  private lose(reason: string): void {
    if (!this.term || this.term.signal.aborted) return;
    clearTimeout(this.timer);
    clearTimeout(this.expiry);
    this.log?.warn({ key: this.key, owner: this.owner, reason }, 'lease lost');
    this.term.abort(new Error(`lease ${this.key} lost: ${reason}`));
  }

  /** Gives the lease up (deleting the key if still ours, so a successor need not wait) and ends the term. */
  async release(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiry);
    const term = this.term;
    if (!term || term.signal.aborted) return;
    term.abort(new Error(`lease ${this.key} released`));
    try {
      await this.kv.delete(this.key, { previousSeq: this.revision });
      this.log?.info({ key: this.key, owner: this.owner }, 'lease released');
    } catch (err) {
      // Someone else holds it already, or NATS is away: it runs out on its own.
      this.log?.debug({ key: this.key, err: (err as Error).message }, 'lease: release not written');
    }
  }
}

/**
 * Runs `work` whenever this process holds the lease, until `signal` aborts: acquire, run
 * with a signal aborted on loss or stop, release, start over. `work` should return soon
 * after its signal aborts; an error it throws is logged and leadership is given up (so a
 * healthy replica can take over) before trying again after the interval.
 */
export async function whileLeader(
  lease: Lease,
  signal: AbortSignal,
  work: (term: AbortSignal) => Promise<void>,
  log?: Logger,
): Promise<void> {
  while (!signal.aborted) {
    let term: AbortSignal;
    try {
      term = await lease.acquire(signal);
    } catch {
      return; // aborted while waiting
    }
    const both = AbortSignal.any([term, signal]);
    try {
      await work(both);
    } catch (err) {
      if (!both.aborted) log?.error({ key: lease.key, err }, 'work under lease failed; giving the lease up');
    }
    await lease.release();
    if (!signal.aborted && !term.aborted) await delay(1000, signal).catch(() => undefined);
  }
}

/**
 * Runs `work` whenever this process holds the lease (whileLeader) until stop(): stop aborts
 * the work, waits for it and releases the lease, so another replica (or the restarted
 * process) takes over at once. One connection or poller per platform bot across replicas.
 */
export function startUnderLease(opts: LeaseOptions, work: (term: AbortSignal) => Promise<void>): { lease: Lease; stop(): Promise<void> } {
  const ac = new AbortController();
  const lease = new Lease(opts);
  const done = whileLeader(lease, ac.signal, work, opts.log);
  return {
    lease,
    async stop() {
      ac.abort();
      await done;
    },
  };
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
