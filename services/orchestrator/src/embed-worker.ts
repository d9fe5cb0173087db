// Background embedding for a remote model: memory cannot reach the provider, so
// the orchestrator leases chunks that lack a current embedding (new turns and
// notes, or everything after a model/dimension change), embeds them through
// egress and stores the vectors. Leases live in memory's database: the work
// resumes after a restart and replicas share it. It never blocks a turn.
import type { Embedder } from '@talon/embed';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { MemoryApi } from './memory.ts';

export interface EmbedWorkerOptions {
  memory: MemoryApi;
  embedder: Embedder;
  log: Logger;
  batch: number;
  idleMs: number;
  leaseMs?: number;
}

export class RemoteEmbeddingWorker {
  private readonly batch: EmbedWorkerOptions['batch'];
  private readonly embedder: EmbedWorkerOptions['embedder'];
  private readonly idleMs: EmbedWorkerOptions['idleMs'];
  private readonly leaseMs: EmbedWorkerOptions['leaseMs'];
  private readonly log: EmbedWorkerOptions['log'];
  private readonly memory: EmbedWorkerOptions['memory'];
  private stopped = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private nudged = false;
  private readonly abort = new AbortController();

  constructor(opts: EmbedWorkerOptions) {
    this.batch = opts.batch;
    this.embedder = opts.embedder;
    this.idleMs = opts.idleMs;
    this.leaseMs = opts.leaseMs;
    this.log = opts.log;
    this.memory = opts.memory;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** New rows were written: look for work now instead of after the idle pause. */
  nudge(): void {
    this.nudged = true;
    this.wake?.();
  }

  /** Embeds until nothing is left; returns how many chunks were embedded. */
  async runOnce(): Promise<number> {
    const memory = this.memory;
    const embedder = this.embedder;
    let cursor = '';
    let wrapped = false;
    let done = 0;
    while (!this.stopped) {
      const work = await memory.claimEmbeddingWork({
        model: embedder.model,
        dim: embedder.dim,
        limit: this.batch,
        leaseMs: this.leaseMs ?? 60_000,
        afterChunkId: cursor,
      });
      if (work.items.length === 0) {
        // Rows behind the cursor (expired leases, new rows) get one more sweep from the start.
        if (cursor === '' || wrapped) break;
        cursor = '';
        wrapped = true;
        continue;
      }
      const vectors = await embedder.embed(
        work.items.map((i) => i.content),
        this.abort.signal,
      );
      await memory.putEmbeddings({
        model: embedder.model,
        dim: embedder.dim,
        items: work.items.map((it, k) => ({ chunkId: it.chunkId, values: Array.from(vectors[k]!) })),
      });
      done += work.items.length;
      cursor = work.items.at(-1)!.chunkId;
    }
    return done;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      this.nudged = false;
      let delay = this.idleMs;
      try {
        const n = await this.runOnce();
        failures = 0;
        if (n > 0) this.log.info({ embedded: n, model: this.embedder.model }, 'embedded memory chunks');
      } catch (err) {
        failures += 1;
        const misconfigured = err instanceof TalonError && err.code === 'invalid_argument';
        delay = misconfigured ? this.idleMs : Math.min(this.idleMs, 1000 * 2 ** Math.min(failures, 6));
        this.log[misconfigured ? 'error' : 'warn']({ err: (err as Error).message, retry_ms: delay }, 'background embedding failed');
      }
      if (this.stopped || this.nudged) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, delay);
        this.timer.unref();
      });
      this.wake = undefined;
    }
  }

  /**
   * Stops after the batch in flight (storing it releases its lease); past
   * `graceMs` the request is aborted and the lease simply expires.
   */
  async stop(graceMs = 1500): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    const grace = setTimeout(() => this.abort.abort(), graceMs);
    try {
      await this.running?.catch(() => undefined);
    } finally {
      clearTimeout(grace);
    }
  }
}
