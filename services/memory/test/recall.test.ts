// Recall quality on the small labelled set in test/fixtures/recall: the hybrid
// search must find the relevant documents in its top 5 for most queries, and
// fusing both halves must not be worse than either half alone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { HashedLexicalEmbedder } from '@talon/embed';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';
import { ingestRecallSet, loadRecallSet, recallAtK } from './recall-fixture.ts';

/** Floor for hybrid recall@5 with the offline hashed-lexical embedder (measured 0.9+; see bench/memory.ts). */
const HYBRID_FLOOR = 0.9;

const kinds = await databaseKinds();

for (const { kind, skip } of kinds) {
  describe(`recall@5 on the labelled set (${kind} database)`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    let store: MemoryStore;
    const embedder = new HashedLexicalEmbedder(384);
    const set = loadRecallSet();

    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-recall-test' });
      configureSearchSessions(pool, { efSearch: 100 });
      await migrate(pool, MEMORY_SCHEMA, memoryMigrations, createLogger({ service: 'test', level: 'silent' }));
      store = new MemoryStore(pool, {
        model: embedder.model,
        dim: 384,
        embedder,
        chunk: { size: 1000, overlap: 150 },
        candidates: 40,
        rrfK: 60,
      });
      await ingestRecallSet(store, 'recall-user', set.docs);
      // Noise from another user must not change anything.
      await ingestRecallSet(
        store,
        'other-user',
        set.docs.map((d) => ({ id: d.id, text: `${d.text} (other user's copy)` })),
      );
      await store.ensureVectorIndex({ m: 16, efConstruction: 64, buildMemoryMb: 64 });
    });
    after(async () => {
      await pool?.end();
      await db?.close();
    });

    it(`hybrid recall@5 is at least ${HYBRID_FLOOR} and not below either half`, async (t) => {
      const hybrid = await recallAtK(store, 'recall-user', set.queries, 5, 'hybrid', embedder);
      const text = await recallAtK(store, 'recall-user', set.queries, 5, 'text', embedder);
      const vector = await recallAtK(store, 'recall-user', set.queries, 5, 'vector', embedder);
      t.diagnostic(
        `recall@5 hybrid=${hybrid.recall.toFixed(3)} text=${text.recall.toFixed(3)} vector=${vector.recall.toFixed(3)} (${set.queries.length} queries)`,
      );
      t.diagnostic(`hybrid misses: ${hybrid.misses.join(' | ') || 'none'}`);
      assert.ok(
        hybrid.recall >= HYBRID_FLOOR,
        `hybrid recall@5 ${hybrid.recall.toFixed(3)} < ${HYBRID_FLOOR}; misses: ${hybrid.misses.join(' | ')}`,
      );
      assert.ok(hybrid.recall >= Math.max(text.recall, vector.recall) - 0.03, 'fusion is not worse than the better half');
    });
  });
}
