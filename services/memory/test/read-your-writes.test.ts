// Turns are indexed for recall just after they are stored, off the caller's
// latency (the `talon up` wiring). A search that comes right after the store must
// still find them: a fact stated in one turn is recallable in the very next one.
// Runs the real handlers with the real background indexer on both databases.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import type { CallContext, Metadata } from '@talon/kit/grpc';
import { HashedLexicalEmbedder } from '@talon/embed';
import { SearchRequest, type SearchResponse } from '@talon/proto';
import { BackgroundUpkeep, SEARCH_WAITS_FOR_INDEXING_MS } from '../src/background.ts';
import { memoryHandlers } from '../src/handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore, type SearchInput } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';

const DIM = 384;
const ctx = { peer: 'orchestrator', method: 'test', metadata: undefined as unknown as Metadata } satisfies CallContext;
const log = createLogger({ service: 'test', level: 'silent' });

for (const { kind, skip } of await databaseKinds()) {
  describe(`deferred indexing on the ${kind} database`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    let store: MemoryStore;
    let upkeep: BackgroundUpkeep;

    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-ryw-test' });
      configureSearchSessions(pool, { efSearch: 100 });
      await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log);
      store = new MemoryStore(pool, {
        model: 'hashed-lexical-v1',
        dim: DIM,
        embedder: new HashedLexicalEmbedder(DIM),
        chunk: { size: 500, overlap: 80 },
        candidates: 40,
        rrfK: 60,
      });
      upkeep = new BackgroundUpkeep({ store, log, batch: 64, idleMs: 60_000, hnsw: { m: 16, efConstruction: 64, buildMemoryMb: 64 } });
    });
    after(async () => {
      await upkeep?.stop();
      await pool?.end();
      await db?.close();
    });

    /** The handlers as `talon up` wires them; `waitMs` undefined: searches do not wait. */
    const handlers = (waitMs?: number) =>
      memoryHandlers(store, {
        onTurnsStored: (c) => upkeep.indexSoon(c),
        ...(waitMs === undefined ? {} : { beforeSearch: (q: SearchInput) => upkeep.indexedFor(q.userId, q.exclude, waitMs) }),
        maxTurnBytes: 256 * 1024,
        maxDocumentBytes: 1024 * 1024,
        searchMaxLimit: 50,
        hnsw: { m: 16, efConstruction: 64 },
      });

    /** Makes every indexing pass take `ms` longer, as on a busy database. */
    function slowIndexing(ms: number): () => void {
      const original = store.indexPendingHistory.bind(store);
      store.indexPendingHistory = async (batch: number) => {
        await new Promise((r) => setTimeout(r, ms));
        return original(batch);
      };
      return () => {
        store.indexPendingHistory = original;
      };
    }

    /**
     * Stores a fact in conversation `word`, then at once searches for it as `searcher`
     * (excluding `exclude`, as recall leaves out the conversation being answered).
     */
    async function storeThenSearch(h: ReturnType<typeof handlers>, word: string, searcher = 'alice', exclude?: string) {
      await h.appendTurns(
        {
          conversation: { userId: 'alice', channel: 'api', threadId: word },
          turns: [{ id: word, role: 'user', source: 'user', content: `my ${word} note is stored`, createdAtMs: 0 }],
        },
        ctx,
      );
      const t0 = Date.now();
      const res = (await h.search(
        SearchRequest.fromPartial({
          userId: searcher,
          query: word,
          limit: 5,
          ...(exclude ? { excludeConversation: { userId: searcher, channel: 'api', threadId: exclude } } : {}),
        }),
        ctx,
      )) as SearchResponse;
      return { found: res.hits.filter((x) => x.content.includes(word)).length, ms: Date.now() - t0 };
    }

    it('without waiting, a search right after the store misses the turn (the race is real)', async () => {
      const restore = slowIndexing(300);
      try {
        assert.equal((await storeThenSearch(handlers(), 'zeppelin')).found, 0);
      } finally {
        await upkeep.indexed(5000);
        restore();
      }
    });

    it("a search waits for the user's turns stored before it, and finds them", async () => {
      const restore = slowIndexing(300);
      try {
        const h = handlers(SEARCH_WAITS_FOR_INDEXING_MS);
        assert.equal((await storeThenSearch(h, 'marmalade')).found, 1);
        assert.equal((await storeThenSearch(h, 'zeppelin', 'alice', 'elsewhere')).found, 1, 'also when another conversation is left out');
      } finally {
        restore();
      }
    });

    it('does not wait for the conversation it leaves out, nor for other users', async () => {
      const restore = slowIndexing(800);
      try {
        const h = handlers(SEARCH_WAITS_FOR_INDEXING_MS);
        const own = await storeThenSearch(h, 'pelican', 'alice', 'pelican');
        assert.equal(own.found, 0, 'the left-out conversation is not searched');
        assert.ok(own.ms < 500, `waited ${own.ms} ms for the conversation being answered`);
        const other = await storeThenSearch(h, 'walrus', 'bob');
        assert.equal(other.found, 0, "bob never sees alice's turn");
        assert.ok(other.ms < 500, `bob's search waited ${other.ms} ms for alice's turns`);
      } finally {
        await upkeep.indexed(10_000);
        restore();
      }
    });

    it('never waits longer than its bound for a slow indexing pass', async () => {
      const restore = slowIndexing(1500);
      try {
        const { found, ms } = await storeThenSearch(handlers(100), 'quokka');
        assert.ok(ms < 1000, `the search took ${ms} ms`);
        assert.equal(found, 0, 'answered before the slow pass finished');
      } finally {
        await upkeep.indexed(10_000);
        restore();
      }
    });
  });
}
