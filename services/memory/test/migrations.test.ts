// Migrations apply from empty and from every earlier version, on the embedded
// database and on a PostgreSQL server: apply 1..k, write representative rows of
// version k, migrate to latest, and check the rows survived and still work
// (history readable, old turns made searchable, stale embeddings re-embedded).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { HashedLexicalEmbedder } from '@talon/embed';
import { BackgroundUpkeep } from '../src/background.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';

const LATEST = memoryMigrations.length;
const log = createLogger({ service: 'test', level: 'silent' });
const DIM = 64;

type Seeder = (pool: Pool) => Promise<void>;
type Checker = (pool: Pool, store: MemoryStore) => Promise<void>;

// Rows as each version wrote them, in that version's SQL (not today's store code).
const SEED: Record<number, Seeder> = {
  1: async (pool) => {
    await pool.query(`insert into memory.conversations (id, user_id, channel, thread_id) values
      ('00000000-0000-0000-0000-00000000000a', 'alice', 'api', 'v1-thread'),
      ('00000000-0000-0000-0000-00000000000b', 'bob', 'api', 'v1-thread')`);
    await pool.query(
      `insert into memory.conversation_history (conversation_id, user_id, turn_id, role, source, content) values
      ('00000000-0000-0000-0000-00000000000a', 'alice', 't1:user', 'user', 'user', 'My sailing boat is called Kestrel 🚤'),
      ('00000000-0000-0000-0000-00000000000a', 'alice', 't1:assistant', 'assistant', 'assistant', 'Noted: your boat is Kestrel.'),
      ('00000000-0000-0000-0000-00000000000a', 'alice', 't2:tool', 'tool', 'tool', 'tool output that is not indexed'),
      ('00000000-0000-0000-0000-00000000000b', 'bob', 't1:user', 'user', 'user', 'Мой кот — Барсик, and my boat is the Albatross'),
      ('00000000-0000-0000-0000-00000000000b', 'bob', 't2:user', 'user', 'user', $1)`,
      [`long turn ${'lorem ipsum dolor sit amet '.repeat(200)} unique-tail-marker`],
    );
  },
  2: async (pool) => {
    // A document whose chunks carry embeddings of a model that is no longer configured.
    await pool.query(`insert into memory.documents (id, user_id, doc_key, title, source, content_sha256, content_chars) values
      ('00000000-0000-0000-0000-0000000000d1', 'alice', 'note:garden', 'Garden', 'user', 'x', 40)`);
    await pool.query(`insert into memory.vector_embeddings (user_id, document_id, source, seq, content, embedding, embedding_model, embedding_dim, embedded_at)
      values ('alice', '00000000-0000-0000-0000-0000000000d1', 'user', 0, 'The tomatoes grow by the south fence', '[1,0,0,0]', 'old-model', 4, now())`);
    await pool.query(
      `insert into memory.agents_config (agent_id, display_name, settings) values ('default', 'Talon', '{"tools":["memory"]}')`,
    );
  },
  3: async (pool) => {
    // A conversation dave deleted a moment ago, and erin's whole memory.
    await pool.query(`insert into memory.erasures (user_id, channel, thread_id, erased_at) values
      ('dave', 'api', 'gone', now()), ('erin', '', '', now())`);
  },
};

const CHECK: Record<number, Checker> = {
  1: async (_pool, store) => {
    const a = await store.history({ userId: 'alice', channel: 'api', threadId: 'v1-thread' }, 10);
    assert.deepEqual(
      a.map((t) => [t.id, t.role, t.source]),
      [
        ['t1:user', 'user', 'user'],
        ['t1:assistant', 'assistant', 'assistant'],
        ['t2:tool', 'tool', 'tool'],
      ],
    );
    assert.equal(a[0]!.content, 'My sailing boat is called Kestrel 🚤');
    // Old turns became searchable memory, for their own user only.
    const hit = await store.search({ userId: 'alice', query: 'what is my boat called', limit: 5 });
    assert.ok(
      hit.hits.some((h) => h.content.includes('Kestrel')),
      'v1 turn is recalled',
    );
    assert.ok(!hit.hits.some((h) => h.content.includes('Albatross')), "bob's v1 turn is not alice's");
    assert.ok(!hit.hits.some((h) => h.content.includes('tool output')), 'tool turns are not indexed');
    const bob = await store.search({ userId: 'bob', query: 'unique-tail-marker', limit: 5 });
    assert.ok(
      bob.hits.some((h) => h.content.includes('unique-tail-marker')),
      'a long v1 turn was chunked and its tail is findable',
    );
    const cyr = await store.search({ userId: 'bob', query: 'Барсик', limit: 5 });
    assert.ok(cyr.hits.some((h) => h.content.includes('Барсик')));
    // v1 conversations are listed with their activity and title.
    const listed = await store.listConversations('alice', { limit: 10 });
    assert.deepEqual(
      listed.conversations.map((c) => [c.threadId, c.title, c.turns]),
      [['v1-thread', 'My sailing boat is called Kestrel 🚤', 2]],
    );
    assert.ok(listed.conversations[0]!.lastActivityMs >= listed.conversations[0]!.createdAtMs);
  },
  2: async (pool, store) => {
    const hit = await store.search({ userId: 'alice', query: 'where do the tomatoes grow', limit: 5 });
    assert.equal(hit.hits[0]?.documentKey, 'note:garden');
    assert.ok(hit.hits[0]!.vectorRank > 0, 're-embedded with the configured model, so the vector half finds it');
    const { rows } = await pool.query(`select settings from memory.agents_config where agent_id = 'default'`);
    assert.deepEqual(rows[0]?.settings, { tools: ['memory'] });
  },
  3: async (_pool, store) => {
    const late = Date.now() - 60_000;
    const a = await store.appendTurns({ userId: 'dave', channel: 'api', threadId: 'gone' }, [
      { id: 'late', role: 'assistant', source: 'assistant', content: 'late answer', createdAtMs: late },
    ]);
    assert.equal(a.inserted, 0, 'the erasure keeps a late turn out');
    const b = await store.appendTurns({ userId: 'erin', channel: 'web', threadId: 'any' }, [
      { id: 'late', role: 'user', source: 'user', content: 'late message', createdAtMs: late },
    ]);
    assert.equal(b.inserted, 0, 'the user-wide erasure covers every conversation');
    assert.deepEqual((await store.listConversations('erin', { limit: 10 })).conversations, []);
  },
};

const kinds = await databaseKinds();

for (const { kind, skip } of kinds) {
  describe(`memory migrations on the ${kind} database`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-migration-test' });
      configureSearchSessions(pool, { efSearch: 100 });
    });
    after(async () => {
      await pool?.end();
      await db?.close();
    });

    // k = LATEST: nothing to apply, but the rows of the newest version must work with today's code too.
    for (let k = 0; k <= LATEST; k++) {
      it(`migrates from version ${k} to ${LATEST} and keeps version ${k}'s data`, async () => {
        await pool.query(`drop schema if exists ${MEMORY_SCHEMA} cascade`);
        const first = await migrate(pool, MEMORY_SCHEMA, memoryMigrations.slice(0, k), log);
        assert.equal(first.current, k);
        for (let v = 1; v <= k; v++) await SEED[v]!(pool);

        const res = await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log);
        assert.deepEqual(
          res.applied,
          Array.from({ length: LATEST - k }, (_, i) => k + 1 + i),
        );
        assert.equal(res.current, LATEST);
        assert.deepEqual((await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log)).applied, [], 'a second run applies nothing');

        const store = new MemoryStore(pool, {
          model: 'hashed-lexical-v1',
          dim: DIM,
          embedder: new HashedLexicalEmbedder(DIM),
          chunk: { size: 400, overlap: 60 },
          candidates: 40,
          rrfK: 60,
        });
        const upkeep = new BackgroundUpkeep({
          store,
          log,
          batch: 3,
          idleMs: 60_000,
          hnsw: { m: 16, efConstruction: 64, buildMemoryMb: 64 },
        });
        const pass = await upkeep.runOnce();
        assert.notEqual(pass.index, 'busy');
        const status = await store.embeddingStatus({ m: 16, efConstruction: 64 });
        assert.equal(status.current, status.chunks, 'every chunk carries an embedding of the configured model');
        assert.ok(status.indexReady, 'the HNSW index for the configured dimension exists');
        for (let v = 1; v <= k; v++) await CHECK[v]!(pool, store);

        // Today's code works on the migrated schema.
        await store.appendTurns({ userId: 'carol', channel: 'api', threadId: 'new' }, [
          { id: 'n1', role: 'user', source: 'user', content: 'fresh turn after migration' },
        ]);
        const fresh = await store.search({ userId: 'carol', query: 'fresh turn', limit: 3 });
        assert.equal(fresh.hits[0]?.content, 'fresh turn after migration');
      });
    }

    it('refuses a database newer than this build', async () => {
      await pool.query(`insert into ${MEMORY_SCHEMA}.schema_migrations (version, name) values (${LATEST + 1}, 'from the future')`);
      await assert.rejects(migrate(pool, MEMORY_SCHEMA, memoryMigrations, log), /upgrade Talon instead of downgrading/);
      await pool.query(`delete from ${MEMORY_SCHEMA}.schema_migrations where version = ${LATEST + 1}`);
    });
  });
}
