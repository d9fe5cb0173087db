// One user's search never returns another user's rows, whatever the request:
// SQL-looking text, tsquery operator syntax, absurd limits, unicode tricks,
// crafted user ids, another user's conversation or embedding. Runs the real
// handlers (validation + SQL) on both databases.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { TalonError } from '@talon/kit/errors';
import type { CallContext, Metadata } from '@talon/kit/grpc';
import { HashedLexicalEmbedder } from '@talon/embed';
import type { SearchRequest, SearchResponse } from '@talon/proto';
import { memoryHandlers } from '../src/handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';

const DIM = 384;
const MODEL = 'hashed-lexical-v1';
const ctx = { peer: 'orchestrator', method: 'test', metadata: undefined as unknown as Metadata } satisfies CallContext;

const CRAFTED_QUERIES = [
  'secret',
  "' OR '1'='1",
  "alice'; drop table memory.vector_embeddings; --",
  "x' union select content from memory.vector_embeddings --",
  '%',
  '_',
  '*',
  '\\',
  '$1',
  '$$ select 1 $$',
  "E'\\x00'",
  'secret & !nothing | (alice:* <-> bob)',
  '!!!',
  ':*',
  "'",
  "''",
  '(((',
  'alice:* | bob:* | mallory:*',
  '!alice',
  'ｓｅｃｒｅｔ',
  '秘密 🔑',
  '\u202esecret\u202c',
  'se\u200bcret',
  'sécret',
  '\ud800 lone surrogate',
  'a'.repeat(8000),
  '',
  ' ',
];

const LIMITS = [0, -1, -2147483648, 1, 5, 50, 4294967295, 1e9, Number.MAX_SAFE_INTEGER];

function req(over: Partial<SearchRequest>): SearchRequest {
  return {
    userId: 'alice',
    query: 'secret',
    limit: 5,
    queryEmbedding: undefined,
    excludeConversation: undefined,
    sources: [],
    minSimilarity: 0,
    ...over,
  };
}

const kinds = await databaseKinds();

for (const { kind, skip } of kinds) {
  describe(`user isolation of memory on the ${kind} database`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    let h: ReturnType<typeof memoryHandlers>;
    const embedder = new HashedLexicalEmbedder(DIM);
    const search = (r: SearchRequest) => h.search(r, ctx) as Promise<SearchResponse>;

    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-isolation-test' });
      configureSearchSessions(pool, { efSearch: 100 });
      await migrate(pool, MEMORY_SCHEMA, memoryMigrations, createLogger({ service: 'test', level: 'silent' }));
      const store = new MemoryStore(pool, {
        model: MODEL,
        dim: DIM,
        embedder,
        chunk: { size: 500, overlap: 80 },
        candidates: 40,
        rrfK: 60,
      });
      await store.ensureVectorIndex({ m: 16, efConstruction: 64, buildMemoryMb: 64 });
      h = memoryHandlers(store, {
        maxTurnBytes: 256 * 1024,
        maxDocumentBytes: 1024 * 1024,
        searchMaxLimit: 50,
        hnsw: { m: 16, efConstruction: 64 },
      });
      // Alice has many rows full of the words an attacker would search for; bob a few; mallory none.
      const conv = (userId: string, threadId: string) => ({ userId, channel: 'api', threadId });
      for (let i = 0; i < 60; i++) {
        await h.appendTurns(
          {
            conversation: conv('alice', `t${i % 3}`),
            turns: [
              {
                id: `a${i}`,
                role: 'user',
                source: 'user',
                content: `[owner:alice] secret ${i}: alice bob mallory 秘密 🔑 sécret % _ * ' ${'x'.repeat(i)}`,
                createdAtMs: 0,
              },
            ],
          },
          ctx,
        );
      }
      await h.upsertDocument(
        {
          userId: 'alice',
          key: 'shared-key',
          title: 'alice doc',
          content: '[owner:alice] the vault secret is tangerine',
          source: 'user',
          origin: undefined,
        },
        ctx,
      );
      for (let i = 0; i < 5; i++) {
        await h.appendTurns(
          {
            conversation: conv('bob', 't0'),
            turns: [{ id: `b${i}`, role: 'user', source: 'user', content: `[owner:bob] my own note ${i} about secrets`, createdAtMs: 0 }],
          },
          ctx,
        );
      }
      // A user id that differs from alice only in case is another user.
      await h.appendTurns(
        {
          conversation: conv('ALICE', 't0'),
          turns: [{ id: 'c1', role: 'user', source: 'user', content: '[owner:ALICE] secret of the upper-case user', createdAtMs: 0 }],
        },
        ctx,
      );
    });
    after(async () => {
      await pool?.end();
      await db?.close();
    });

    const owners = (res: SearchResponse) => new Set(res.hits.map((x) => /\[owner:(\w+)\]/.exec(x.content)?.[1] ?? '?'));

    it('finds the searching user’s own rows (the attack queries are not vacuous)', async () => {
      const a = await search(req({ userId: 'alice', query: 'secret', limit: 50 }));
      assert.ok(a.hits.length >= 40, `alice sees her rows (${a.hits.length})`);
      assert.deepEqual([...owners(a)], ['alice']);
      const b = await search(req({ userId: 'bob', query: 'secret', limit: 50 }));
      assert.ok(b.hits.length >= 1);
      assert.deepEqual([...owners(b)], ['bob']);
      assert.ok(a.vectorUsed && b.vectorUsed);
    });

    it('never returns another user’s rows for crafted queries, limits and users', async () => {
      let calls = 0;
      for (const user of ['bob', 'mallory', 'ALICE']) {
        for (const query of CRAFTED_QUERIES) {
          for (const limit of LIMITS) {
            let res: SearchResponse;
            try {
              res = await search(req({ userId: user, query, limit, minSimilarity: -1 }));
            } catch (err) {
              // Refusals are fine (oversized query, lone surrogate...), leaks are not.
              assert.ok(err instanceof TalonError && err.code === 'invalid_argument', `unexpected ${String(err)}`);
              continue;
            }
            calls += 1;
            assert.ok(res.hits.length <= 50, 'limit capped');
            for (const o of owners(res))
              assert.equal(
                o,
                user === 'mallory' ? 'none' : user,
                `query ${JSON.stringify(query.slice(0, 40))} leaked ${o}'s rows to ${user}`,
              );
            if (user === 'mallory') assert.equal(res.hits.length, 0);
          }
        }
      }
      assert.ok(calls > 500, `ran ${calls} searches`);
      // The SQL-looking inputs did nothing to the schema.
      const { rows } = await pool.query(`select count(*)::int as n from memory.vector_embeddings where user_id = 'alice'`);
      assert.ok(rows[0].n >= 61);
    });

    it('refuses crafted user ids and conversations of another user', async () => {
      for (const userId of ["alice' or '1'='1", '%', 'alice%', '*', '', ' alice', 'alice\u0000', 'a'.repeat(201), 'alice;--']) {
        await assert.rejects(search(req({ userId })), (e: TalonError) => e.code === 'invalid_argument', JSON.stringify(userId));
      }
      await assert.rejects(
        search(req({ userId: 'bob', excludeConversation: { userId: 'alice', channel: 'api', threadId: 't0' } })),
        (e: TalonError) => e.code === 'invalid_argument' && /exclude_conversation.user_id/.test(e.message),
      );
      await assert.rejects(search(req({ sources: ["user' or 1=1"] })), (e: TalonError) => e.code === 'invalid_argument');
      await assert.rejects(search(req({ minSimilarity: Number.NaN })), (e: TalonError) => e.code === 'invalid_argument');
      await assert.rejects(search(req({ query: 'q'.repeat(9000) })), (e: TalonError) => e.code === 'invalid_argument');
    });

    it('an embedding of alice’s own text, sent for bob, finds only bob’s rows', async () => {
      const [v] = await embedder.embed(['[owner:alice] the vault secret is tangerine']);
      const res = await search(
        req({ userId: 'bob', query: '', limit: 50, minSimilarity: -1, queryEmbedding: { model: MODEL, dim: DIM, values: Array.from(v!) } }),
      );
      assert.ok(res.vectorUsed);
      assert.ok(res.hits.length > 0);
      assert.deepEqual([...owners(res)], ['bob']);
      await assert.rejects(
        search(req({ queryEmbedding: { model: 'other-model', dim: DIM, values: Array.from(v!) } })),
        (e: TalonError) => e.code === 'invalid_argument' && /TALON_EMBEDDINGS_MODEL/.test(e.message),
      );
      await assert.rejects(
        search(req({ queryEmbedding: { model: MODEL, dim: DIM, values: [...Array.from(v!).slice(1), Number.POSITIVE_INFINITY] } })),
        (e: TalonError) => e.code === 'invalid_argument',
      );
    });

    it('documents and history are per user even under the same key or thread', async () => {
      const del = (await h.deleteDocument({ userId: 'bob', key: 'shared-key' }, ctx)) as { deleted: boolean };
      assert.equal(del.deleted, false, "bob cannot delete alice's document");
      await h.upsertDocument(
        { userId: 'bob', key: 'shared-key', title: 'bob doc', content: '[owner:bob] bob writes here', source: 'user', origin: undefined },
        ctx,
      );
      const a = await search(req({ userId: 'alice', query: 'tangerine' }));
      assert.ok(
        a.hits.some((x) => x.content.includes('tangerine')),
        "alice's document is intact",
      );
      const b = await search(req({ userId: 'bob', query: 'tangerine bob writes' }));
      assert.deepEqual([...owners(b)], ['bob']);
      const hist = (await h.getHistory(
        { conversation: { userId: 'bob', channel: 'api', threadId: 't1' }, limit: 500, roles: [] },
        ctx,
      )) as {
        turns: unknown[];
      };
      assert.equal(hist.turns.length, 0, "bob's view of alice's thread id is empty");
    });

    it('excludes the current conversation only, and keeps documents', async () => {
      const res = await search(
        req({
          userId: 'alice',
          query: 'secret tangerine',
          limit: 50,
          excludeConversation: { userId: 'alice', channel: 'api', threadId: 't0' },
        }),
      );
      assert.ok(res.hits.length > 0);
      for (const x of res.hits) assert.ok(x.threadId !== 't0', 'no hit from the excluded thread');
      assert.ok(res.hits.some((x) => x.kind === 'document'));
      // The first turn of a new conversation: nothing to exclude, documents included.
      const fresh = await search(
        req({
          userId: 'alice',
          query: 'tangerine',
          limit: 5,
          excludeConversation: { userId: 'alice', channel: 'api', threadId: 'not-yet' },
        }),
      );
      assert.ok(fresh.hits.some((x) => x.kind === 'document' && x.content.includes('tangerine')));
    });

    it('refuses oversized documents with a clear error and accepts chunked large ones', async () => {
      await assert.rejects(
        h.upsertDocument(
          { userId: 'bob', key: 'huge', title: '', content: 'x'.repeat(1024 * 1024 + 1), source: 'user', origin: undefined },
          ctx,
        ),
        (e: TalonError) => e.code === 'payload_too_large' && /MEMORY_MAX_DOCUMENT_BYTES/.test(e.message),
      );
      const big = Array.from({ length: 2000 }, (_, i) => `Sentence ${i} mentions bob-topic-${i}.`).join(' ');
      const r = (await h.upsertDocument(
        { userId: 'bob', key: 'big', title: 'big', content: big, source: 'web', origin: undefined },
        ctx,
      )) as { chunks: number; changed: boolean };
      assert.ok(r.chunks > 50 && r.changed);
      const again = (await h.upsertDocument(
        { userId: 'bob', key: 'big', title: 'big', content: big, source: 'web', origin: undefined },
        ctx,
      )) as { chunks: number; changed: boolean };
      assert.equal(again.changed, false);
      assert.equal(again.chunks, r.chunks);
      const tail = await search(req({ userId: 'bob', query: 'bob-topic-1999' }));
      assert.ok(tail.hits[0]?.content.includes('bob-topic-1999'));
      assert.equal(tail.hits[0]?.source, 'web');
      const gone = (await h.deleteDocument({ userId: 'bob', key: 'big' }, ctx)) as { deleted: boolean; chunks: number };
      assert.deepEqual(gone, { deleted: true, chunks: r.chunks });
    });

    it('uses the configured session settings for vector search', async () => {
      const c = await pool.connect();
      try {
        const { rows } = await c.query('select current_setting($1) as v', ['hnsw.iterative_scan']);
        assert.equal(rows[0].v, 'relaxed_order');
      } finally {
        c.release();
      }
    });
  });
}
