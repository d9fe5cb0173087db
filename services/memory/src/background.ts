// Background upkeep that must never block startup or requests:
//   1. index history turns written before searchable memory existed,
//   2. re-embed chunks whose embedding is missing or of another model/dimension
//      (only when memory computes the configured model itself; a remote model's
//      vectors come from the orchestrator through ClaimEmbeddingWork/PutEmbeddings),
//   3. build the HNSW index for the configured dimension.
// Every step works in small transactions keyed on database state, so it resumes
// where it stopped after a restart and several replicas can run it at once.
import type { Logger } from '@talon/kit/log';
import { ERASURE_HOLD_MS } from './conversations.ts';
import type { HnswParams } from './sql.ts';
import type { MemoryStore } from './store.ts';

/** Longest a search waits for turns stored just before it to be indexed. */
export const SEARCH_WAITS_FOR_INDEXING_MS = 2000;

/** Where turns were stored: their conversation. */
export interface StoredIn {
  userId: string;
  channel: string;
  threadId: string;
}

/** One indexing pass: the conversations it covers (key -> user) and its end. */
interface Pass {
  convs: Map<string, string>;
  done: Promise<void>;
  finish: () => void;
}

function newPass(): Pass {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return { convs: new Map(), done, finish };
}

const conversationKey = (c: StoredIn) => `${c.userId}\u0000${c.channel}\u0000${c.threadId}`;

async function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

export interface BackgroundOptions {
  store: MemoryStore;
  log: Logger;
  batch: number;
  idleMs: number;
  hnsw: HnswParams & { buildMemoryMb: number };
}

export class BackgroundUpkeep {
  private readonly store: MemoryStore;
  private readonly log: Logger;
  private readonly batch: number;
  private readonly idleMs: number;
  private readonly hnsw: BackgroundOptions['hnsw'];
  private stopped = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private indexing: Promise<void> | undefined;
  private indexAgain = false;
  /** Conversations with turns stored since the running pass began (covered by the next pass). */
  private next: Pass = newPass();
  /** The running indexing pass. */
  private current: Pass | undefined;

  constructor(opts: BackgroundOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.batch = opts.batch;
    this.idleMs = opts.idleMs;
    this.hnsw = opts.hnsw;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Runs one full pass now (tests and the bench call this directly). */
  async runOnce(): Promise<{ historyIndexed: number; reembedded: number; index: 'ready' | 'built' | 'busy' }> {
    const { store, batch } = this;
    let historyIndexed = 0;
    for (;;) {
      if (this.stopped) break;
      const n = await store.indexPendingHistory(batch);
      historyIndexed += n;
      if (n === 0) break;
    }
    let reembedded = 0;
    if (store.opts.embedder) {
      let cursor = '';
      let wrapped = false;
      while (!this.stopped) {
        const r = await store.reembedLocalBatch(cursor, batch);
        reembedded += r.processed;
        if (r.processed > 0) {
          cursor = r.last;
          continue;
        }
        // Rows behind the cursor whose lease expired get one more sweep from the start.
        if (cursor === '' || wrapped) break;
        cursor = '';
        wrapped = true;
      }
    }
    if (historyIndexed + reembedded > 0)
      this.log.info({ history_indexed: historyIndexed, reembedded, model: store.model, dim: store.dim }, 'memory upkeep pass');
    if (!this.stopped) await store.analyzeIfGrown();
    if (!this.stopped) await store.pruneErasures(ERASURE_HOLD_MS);
    const index = this.stopped ? 'busy' : await store.ensureVectorIndex(this.hnsw, this.log);
    return { historyIndexed, reembedded, index };
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let delay = this.idleMs;
      try {
        const r = await this.runOnce();
        failures = 0;
        // Another replica is building the index: look again soon.
        if (r.index === 'busy') delay = Math.min(delay, 5000);
      } catch (err) {
        failures += 1;
        delay = Math.min(this.idleMs, 1000 * 2 ** Math.min(failures, 6));
        this.log.warn({ err: (err as Error).message, retry_ms: delay }, 'memory upkeep failed; retrying');
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, delay);
        this.timer.unref();
      });
    }
  }

  /**
   * Indexes newly stored turns now, outside the request that stored them. Calls
   * while a pass runs are coalesced into one more pass. `stored` names the
   * conversation the turns went to, so searches can wait for exactly them.
   */
  indexSoon(stored?: StoredIn): void {
    if (this.stopped) return;
    if (stored) this.next.convs.set(conversationKey(stored), stored.userId);
    if (this.indexing) {
      this.indexAgain = true;
      return;
    }
    this.indexing = (async () => {
      do {
        this.indexAgain = false;
        // Turns stored from now on may miss this pass's read: they belong to the next one.
        const pass = this.next;
        this.next = newPass();
        this.current = pass;
        try {
          // A short batch was the last: turns stored after its read belong to the next pass.
          while (!this.stopped && (await this.store.indexPendingHistory(this.batch)) >= this.batch);
        } catch (err) {
          // The periodic pass picks up whatever is left.
          this.log.warn({ err: (err as Error).message }, 'indexing new turns failed; the upkeep pass will retry');
        } finally {
          this.current = undefined;
          pass.finish();
        }
        // Statistics follow the growth (the embedded database has no autovacuum; the text
        // half prunes common terms with them), after the pass so no search waits for it.
        if (!this.stopped && this.store.mayNeedAnalyze) {
          await this.store.analyzeIfGrown().catch((err: unknown) => {
            this.log.warn({ err: (err as Error).message }, 'could not refresh memory statistics; the upkeep pass will');
          });
        }
      } while (this.indexAgain && !this.stopped);
    })().finally(() => {
      this.indexing = undefined;
    });
  }

  /**
   * Resolves once the turns this user stored in other conversations than
   * `exclude` are indexed, or after `maxWaitMs`: a search right after a store
   * reads its own writes (a fact stated in one turn is recallable in the next),
   * without waiting for the turn being answered (recall leaves its conversation
   * out) or for other users, and without ever hanging on a slow pass.
   */
  async indexedFor(userId: string, exclude: { channel: string; threadId: string } | undefined, maxWaitMs: number): Promise<void> {
    const skip = exclude ? conversationKey({ userId, ...exclude }) : undefined;
    const waits: Array<Promise<void>> = [];
    for (const pass of [this.current, this.next]) {
      if (!pass) continue;
      for (const [key, owner] of pass.convs)
        if (owner === userId && key !== skip) {
          waits.push(pass.done);
          break;
        }
    }
    if (waits.length > 0) await settleWithin(Promise.all(waits), maxWaitMs);
  }

  /** Resolves once every turn stored so far is indexed, or after `maxWaitMs`. */
  async indexed(maxWaitMs: number): Promise<void> {
    if (this.indexing) await settleWithin(this.indexing, maxWaitMs);
  }

  async stop(): Promise<void> {
    await this.indexing?.catch(() => undefined);
    this.stopped = true;
    // No pass will cover these any more; nobody waits for them.
    this.next.finish();
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.running?.catch(() => undefined);
  }
}
