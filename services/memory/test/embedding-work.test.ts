// The background (re-)embedding protocol memory offers a remote embedder:
// leases that keep replicas from doing the same work and expire when a worker
// dies (so the work resumes), a cursor, and refusal of vectors of another model.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { TalonError } from '@talon/kit/errors';
import type { CallContext, Metadata } from '@talon/kit/grpc';
import { HashedLexicalEmbedder } from '@talon/embed';
import type { ClaimEmbeddingWorkResponse, SearchResponse } from '@talon/proto';
import { memoryHandlers } from '../src/handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';

const ctx = { peer: 'orchestrator', method: 'test', metadata: undefined as unknown as Metadata } satisfies CallContext;
const MODEL = 'remote-model';
const DIM = 16;
const kinds = await databaseKinds();

for (const { kind, skip } of kinds) {
  describe(`embedding work leases (${kind} database)`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    let h: ReturnType<typeof memoryHandlers>;
    const fakeRemote = new HashedLexicalEmbedder(DIM); // stands in for vectors computed elsewhere

    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-embedding-work-test' });
      configureSearchSessions(pool, { efSearch: 100 });
      await migrate(pool, MEMORY_SCHEMA, memoryMigrations, createLogger({ service: 'test', level: 'silent' }));
      // A remote model: memory stores chunks without vectors and waits for PutEmbeddings.
      const store = new MemoryStore(pool, {
        model: MODEL,
        dim: DIM,
        embedder: undefined,
        chunk: { size: 200, overlap: 20 },
        candidates: 40,
        rrfK: 60,
      });
      h = memoryHandlers(store, { maxTurnBytes: 65536, maxDocumentBytes: 65536, searchMaxLimit: 50, hnsw: { m: 16, efConstruction: 64 } });
      for (let i = 0; i < 10; i++) {
        await h.appendTurns(
          {
            conversation: { userId: 'u1', channel: 'api', threadId: 't' },
            turns: [{ id: `t${i}`, role: 'user', source: 'user', content: `remote turn number ${i} about kites`, createdAtMs: 0 }],
          },
          ctx,
        );
      }
    });
    after(async () => {
      await pool?.end();
      await db?.close();
    });

    const claim = (limit: number, leaseMs: number, after = '') =>
      h.claimEmbeddingWork({ model: MODEL, dim: DIM, limit, leaseMs, afterChunkId: after }, ctx) as Promise<ClaimEmbeddingWorkResponse>;

    it('searches by full text until vectors arrive', async () => {
      const r = (await h.search(
        {
          userId: 'u1',
          query: 'kites',
          limit: 5,
          queryEmbedding: undefined,
          excludeConversation: undefined,
          sources: [],
          minSimilarity: 0,
        },
        ctx,
      )) as SearchResponse;
      assert.equal(r.vectorUsed, false);
      assert.equal(r.hits.length, 5);
    });

    it('leases work once, hands it out again when the lease expires, and follows the cursor', async () => {
      const a = await claim(4, 1000);
      assert.equal(a.items.length, 4);
      const b = await claim(100, 1000);
      assert.equal(b.items.length, 6, 'leased chunks are skipped by a second worker');
      assert.deepEqual(new Set([...a.items, ...b.items].map((i) => i.chunkId)).size, 10);
      assert.equal((await claim(100, 1000)).items.length, 0);
      // The first worker "crashed": after its lease, its batch is available again.
      await new Promise((r) => setTimeout(r, 1100));
      const c = await claim(100, 60_000, a.items[1]!.chunkId);
      assert.ok(
        c.items.every((i) => BigInt(i.chunkId) > BigInt(a.items[1]!.chunkId)),
        'the cursor is honoured',
      );
      const d = await claim(100, 60_000);
      const all = [...c.items, ...d.items];
      const vectors = await fakeRemote.embed(all.map((i) => i.content));
      const put = (await h.putEmbeddings(
        { model: MODEL, dim: DIM, items: all.map((i, k) => ({ chunkId: i.chunkId, values: Array.from(vectors[k]!) })) },
        ctx,
      )) as {
        updated: number;
      };
      assert.equal(put.updated, 10);
      assert.equal((await claim(100, 1000)).items.length, 0, 'nothing left once every chunk has a current vector');
      const [q] = await fakeRemote.embed(['kites']);
      const r = (await h.search(
        {
          userId: 'u1',
          query: 'kites',
          limit: 3,
          queryEmbedding: { model: MODEL, dim: DIM, values: Array.from(q!) },
          excludeConversation: undefined,
          sources: [],
          minSimilarity: 0,
        },
        ctx,
      )) as SearchResponse;
      assert.equal(r.vectorUsed, true);
      assert.ok(r.hits.every((x) => x.vectorRank > 0));
    });

    it('refuses work and vectors of another model or dimension, with the fix in the message', async () => {
      await assert.rejects(
        h.claimEmbeddingWork({ model: 'other', dim: DIM, limit: 1, leaseMs: 0, afterChunkId: '' }, ctx),
        (e: TalonError) => e.code === 'invalid_argument' && /TALON_EMBEDDINGS_MODEL/.test(e.message),
      );
      await assert.rejects(h.putEmbeddings({ model: MODEL, dim: DIM, items: [{ chunkId: '1', values: [1, 2] }] }, ctx), (e: TalonError) =>
        /expected 16/.test(e.message),
      );
      await assert.rejects(
        h.putEmbeddings({ model: MODEL, dim: DIM, items: [{ chunkId: "1' or 1=1", values: [] }] }, ctx),
        (e: TalonError) => e.code === 'invalid_argument',
      );
      const s = (await h.getEmbeddingStatus({}, ctx)) as { current: number; chunks: number; local: boolean };
      assert.deepEqual([s.current, s.chunks, s.local], [10, 10, false]);
    });
  });
}
