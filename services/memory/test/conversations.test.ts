// Users list, read and delete their own conversations and memory: newest first
// with titles and page cursors; user and assistant turns only; deletion removes
// turns, tool records, chunks, embeddings, pending indexing work and the notes
// saved from a conversation in one transaction, so recall stops returning them at
// once; late turns created before a deletion stay out; no user ever reaches
// another's data. Runs the real handlers (validation + SQL) on both databases.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { TalonError } from '@talon/kit/errors';
import type { CallContext, Metadata } from '@talon/kit/grpc';
import { HashedLexicalEmbedder } from '@talon/embed';
import type {
  ConversationRef,
  DeleteConversationResponse,
  DeleteUserMemoryResponse,
  GetConversationMessagesResponse,
  ListConversationsResponse,
  SearchResponse,
  Turn,
} from '@talon/proto';
import { BackgroundUpkeep } from '../src/background.ts';
import { MESSAGES_PAGE_MAX_BYTES } from '../src/conversations.ts';
import { memoryHandlers } from '../src/handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';

const DIM = 64;
const ctx = { peer: 'orchestrator', method: 'test', metadata: undefined as unknown as Metadata } satisfies CallContext;
const log = createLogger({ service: 'test', level: 'silent' });
const HOUR = 3_600_000;

const ref = (userId: string, threadId: string, channel = 'api'): ConversationRef => ({ userId, channel, threadId });
const isCode = (code: string) => (e: unknown) => e instanceof TalonError && e.code === code;

for (const { kind, skip } of await databaseKinds()) {
  describe(`conversations and forgetting on the ${kind} database`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    let store: MemoryStore;
    let upkeep: BackgroundUpkeep;
    let h: ReturnType<typeof memoryHandlers>;
    /** The serving wiring: turns stored unindexed, indexed just after in the background. */
    let deferred: ReturnType<typeof memoryHandlers>;
    const t0 = Date.now() - 10 * HOUR;

    const append = (conv: ConversationRef, turns: Array<Partial<Turn> & { id: string; content: string }>, via = h) =>
      via.appendTurns(
        { conversation: conv, turns: turns.map((t) => ({ role: 'user', source: '', createdAtMs: 0, ...t })) },
        ctx,
      ) as Promise<{ conversationId: string; inserted: number }>;
    const list = (userId: string, over: { limit?: number; before?: string; channel?: string } = {}) =>
      h.listConversations({ userId, limit: 0, before: '', channel: '', ...over }, ctx) as Promise<ListConversationsResponse>;
    const messages = (conv: ConversationRef, over: { limit?: number; before?: string } = {}) =>
      h.getConversationMessages({ conversation: conv, limit: 0, before: '', ...over }, ctx) as Promise<GetConversationMessagesResponse>;
    const del = (conv: ConversationRef) => h.deleteConversation({ conversation: conv }, ctx) as Promise<DeleteConversationResponse>;
    const forget = (userId: string) => h.deleteUserMemory({ userId }, ctx) as Promise<DeleteUserMemoryResponse>;
    const search = (userId: string, query: string) =>
      h.search(
        { userId, query, limit: 50, queryEmbedding: undefined, excludeConversation: undefined, sources: [], minSimilarity: 0 },
        ctx,
      ) as Promise<SearchResponse>;
    const count = async (sql: string, args: unknown[]) => (await pool.query<{ n: number }>(sql, args)).rows[0]!.n;

    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-conversations-test' });
      configureSearchSessions(pool, { efSearch: 100 });
      await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log);
      store = new MemoryStore(pool, {
        model: 'hashed-lexical-v1',
        dim: DIM,
        embedder: new HashedLexicalEmbedder(DIM),
        chunk: { size: 300, overlap: 40 },
        candidates: 40,
        rrfK: 60,
      });
      upkeep = new BackgroundUpkeep({ store, log, batch: 8, idleMs: 60_000, hnsw: { m: 16, efConstruction: 64, buildMemoryMb: 64 } });
      const opts = { maxTurnBytes: 512 * 1024, maxDocumentBytes: 1024 * 1024, searchMaxLimit: 50, hnsw: { m: 16, efConstruction: 64 } };
      h = memoryHandlers(store, opts);
      deferred = memoryHandlers(store, { ...opts, onTurnsStored: (c) => upkeep.indexSoon(c) });

      // alice: three conversations on two channels, activity in a known order; bob: one
      // under the same thread id as one of alice's.
      await append(ref('alice', 'pets'), [
        { id: 'p1:user', content: '  My cat\n\tis called   Pixelbrook and she sleeps on the radiator.  ', createdAtMs: t0 },
        { id: 'p1:tool:0', role: 'tool', source: 'tool', content: '{"tool":"lookup"}', createdAtMs: t0 + 1 },
        { id: 'p1:assistant', role: 'assistant', source: 'assistant', content: 'Pixelbrook is a lovely name.', createdAtMs: t0 + 2 },
      ]);
      await append(ref('alice', 'chat:42', 'telegram'), [
        { id: 't1:user', content: `Plan the trip to Kiruna ${'on the night train '.repeat(10)}`, createdAtMs: t0 + HOUR },
        { id: 't1:system', role: 'system', source: 'system', content: 'system row', createdAtMs: t0 + HOUR + 1 },
        { id: 't1:assistant', role: 'assistant', source: 'assistant', content: 'Kiruna it is.', createdAtMs: t0 + HOUR + 2 },
      ]);
      await append(ref('alice', 'work'), [{ id: 'w1:user', content: 'The quarterly report is due Friday.', createdAtMs: t0 + 2 * HOUR }]);
      await append(ref('bob', 'pets'), [{ id: 'b1:user', content: 'My dog Rufus chews the marimba.', createdAtMs: t0 + 3 * HOUR }]);
      // An older turn arriving later still counts as activity only for its own time.
      await append(ref('alice', 'pets'), [{ id: 'p2:user', content: 'She also likes tuna.', createdAtMs: t0 + 30 * 60_000 }]);
    });
    after(async () => {
      await upkeep?.stop();
      await pool?.end();
      await db?.close();
    });

    it("lists only the user's conversations, newest activity first, with titles and turn counts", async () => {
      const a = await list('alice');
      assert.deepEqual(
        a.conversations.map((c) => [c.channel, c.threadId, c.turns]),
        [
          ['api', 'work', 1],
          ['telegram', 'chat:42', 2],
          ['api', 'pets', 3],
        ],
        'tool records and system rows are not counted as messages',
      );
      assert.equal(a.nextBefore, '');
      const pets = a.conversations[2]!;
      assert.equal(pets.title, 'My cat is called Pixelbrook and she sleeps on the radiator.');
      assert.equal(pets.lastActivityMs, t0 + 30 * 60_000);
      assert.ok(pets.createdAtMs > 0);
      const trip = a.conversations[1]!;
      assert.equal(Array.from(trip.title).length, 80);
      assert.match(trip.title, /^Plan the trip to Kiruna on the night train .*…$/);
      assert.equal(trip.lastActivityMs, t0 + HOUR + 2);

      const b = await list('bob');
      assert.deepEqual(
        b.conversations.map((c) => [c.threadId, c.title]),
        [['pets', 'My dog Rufus chews the marimba.']],
      );
      assert.deepEqual((await list('mallory')).conversations, []);
      assert.deepEqual((await list('ALICE')).conversations, [], 'user ids are exact');
      assert.deepEqual(
        (await list('alice', { channel: 'telegram' })).conversations.map((c) => c.threadId),
        ['chat:42'],
      );
    });

    it('pages through conversations with an opaque cursor, without gaps or repeats', async () => {
      // Same last activity for several conversations: the id breaks the tie.
      for (let i = 0; i < 5; i++) await append(ref('carol', `c${i}`), [{ id: 'x', content: `note ${i}`, createdAtMs: t0 }]);
      const seen: string[] = [];
      let before = '';
      let pages = 0;
      do {
        const page = await list('carol', { limit: 2, before });
        assert.ok(page.conversations.length <= 2);
        seen.push(...page.conversations.map((c) => c.threadId));
        before = page.nextBefore;
        pages += 1;
      } while (before !== '' && pages < 10);
      assert.equal(pages, 3);
      assert.deepEqual([...seen].sort(), ['c0', 'c1', 'c2', 'c3', 'c4']);
      // A cursor from carol's pages never reveals anyone else's conversations.
      const first = await list('carol', { limit: 1 });
      assert.deepEqual((await list('bob', { before: first.nextBefore })).conversations, []);
    });

    it('refuses crafted user ids, channels and cursors', async () => {
      for (const userId of ["alice' or '1'='1", '', '%', 'alice\u0000', ' alice', 'a'.repeat(201)]) {
        await assert.rejects(list(userId), isCode('invalid_argument'), JSON.stringify(userId));
        await assert.rejects(forget(userId), isCode('invalid_argument'), JSON.stringify(userId));
        await assert.rejects(messages(ref(userId, 'pets')), isCode('invalid_argument'));
        await assert.rejects(del(ref(userId, 'pets')), isCode('invalid_argument'));
      }
      await assert.rejects(list('alice', { channel: "api' or 1=1 --" }), isCode('invalid_argument'));
      for (const before of ['not a cursor', "' or 1=1", Buffer.from("2026-01-01T00:00:00.000000Z|' or 1=1").toString('base64url')])
        await assert.rejects(list('alice', { before }), isCode('invalid_argument'), before);
      for (const before of ['-1', '0', '1 or 1=1', 'abc', '99999999999999999999'])
        await assert.rejects(messages(ref('alice', 'pets'), { before }), isCode('invalid_argument'), before);
      await assert.rejects(messages(ref('alice', '*')), isCode('invalid_argument'));
      await assert.rejects(messages(ref('alice', '%')), isCode('invalid_argument'));
    });

    it('returns user and assistant turns in order, never tool records or system rows', async () => {
      const m = await messages(ref('alice', 'pets'));
      assert.deepEqual(
        m.messages.map((t) => [t.id, t.role]),
        [
          ['p1:user', 'user'],
          ['p1:assistant', 'assistant'],
          ['p2:user', 'user'],
        ],
      );
      assert.equal(m.messages[1]!.content, 'Pixelbrook is a lovely name.');
      assert.equal(m.messages[0]!.createdAtMs, t0);
      assert.equal(m.nextBefore, '');
      const trip = await messages(ref('alice', 'chat:42', 'telegram'));
      assert.deepEqual(
        trip.messages.map((t) => t.role),
        ['user', 'assistant'],
      );
    });

    it('answers not_found for a conversation the user does not have, also when another user has it', async () => {
      await assert.rejects(messages(ref('alice', 'nope')), isCode('not_found'));
      await assert.rejects(messages(ref('mallory', 'pets')), isCode('not_found'));
      await assert.rejects(messages(ref('alice', 'pets', 'telegram')), isCode('not_found'), 'the channel is part of the address');
      await assert.rejects(del(ref('mallory', 'pets')), isCode('not_found'));
      await assert.rejects(del(ref('alice', 'chat:42')), isCode('not_found'), 'api/chat:42 is not telegram/chat:42');
      // bob's view of the thread id alice also uses is bob's own conversation.
      const b = await messages(ref('bob', 'pets'));
      assert.deepEqual(
        b.messages.map((t) => t.content),
        ['My dog Rufus chews the marimba.'],
      );
      assert.equal((await list('alice')).conversations.length, 3, 'nothing was deleted');
    });

    it('pages through messages newest page first, each page in order, within the byte budget', async () => {
      const conv = ref('dave', 'long');
      for (let i = 0; i < 7; i++) await append(conv, [{ id: `m${i}`, content: `message ${i}`, createdAtMs: t0 + i }]);
      const p1 = await messages(conv, { limit: 3 });
      assert.deepEqual(
        p1.messages.map((t) => t.content),
        ['message 4', 'message 5', 'message 6'],
      );
      const p2 = await messages(conv, { limit: 3, before: p1.nextBefore });
      assert.deepEqual(
        p2.messages.map((t) => t.content),
        ['message 1', 'message 2', 'message 3'],
      );
      const p3 = await messages(conv, { limit: 3, before: p2.nextBefore });
      assert.deepEqual(
        p3.messages.map((t) => t.content),
        ['message 0'],
      );
      assert.equal(p3.nextBefore, '');
      // Big turns: a page stops short of its byte budget (at least one turn), the rest comes next.
      const big = ref('dave', 'big');
      for (let i = 0; i < 5; i++) await append(big, [{ id: `b${i}`, content: `${i}`.padEnd(1000, '.') }]);
      const pages: string[][] = [];
      let before: string | undefined;
      do {
        const page = await store.conversationMessages(big, { limit: 100, before, maxBytes: 2500 });
        assert.ok(page);
        pages.push(page.messages.map((t) => t.content[0]!));
        before = page.nextBefore || undefined;
      } while (before && pages.length < 10);
      assert.deepEqual(pages, [['3', '4'], ['1', '2'], ['0']]);
      const tiny = await store.conversationMessages(big, { limit: 100, maxBytes: 10 });
      assert.deepEqual(
        tiny?.messages.map((t) => t.content[0]),
        ['4'],
        'one turn even when it alone exceeds the budget',
      );
      assert.ok(MESSAGES_PAGE_MAX_BYTES < 4 * 1024 * 1024, 'a full page fits in one NATS reply');
    });

    it('deletes a conversation with everything derived from it, and recall stops returning it at once', async () => {
      const doomed = ref('erin', 'doomed');
      const kept = ref('erin', 'kept');
      await append(doomed, [
        { id: 'd1:user', content: 'My locker code is Zephyrine-4471 at the harbour gym.' },
        { id: 'd1:tool:0', role: 'tool', source: 'tool', content: '{"locker":"Zephyrine"}' },
        { id: 'd1:assistant', role: 'assistant', source: 'assistant', content: 'Noted the Zephyrine locker.' },
      ]);
      await h.upsertDocument(
        {
          userId: 'erin',
          key: 'note:d1:0',
          title: '',
          content: 'Erin keeps Zephyrine-4471 for the gym.',
          source: 'assistant',
          origin: doomed,
        },
        ctx,
      );
      await h.upsertDocument(
        {
          userId: 'erin',
          key: 'note:free',
          title: '',
          content: 'Erin waters the Zephyrine orchid weekly.',
          source: 'user',
          origin: undefined,
        },
        ctx,
      );
      await append(kept, [{ id: 'k1:user', content: 'The Zephyrine orchid lives on the balcony.' }]);
      // Bob has a conversation under the same thread id with the same words.
      await append(ref('bob', 'doomed'), [{ id: 'x', content: 'Bob also mentions Zephyrine-4471.' }]);
      // Turns still waiting to be indexed, and chunks leased to an embedding worker.
      await append(doomed, [{ id: 'd2:user', content: 'Pending Zephyrine turn not yet indexed.' }], deferred);
      await store.claimEmbeddingWork('', 1000, 60_000);

      const before = await search('erin', 'Zephyrine 4471 locker');
      assert.ok(
        before.hits.some((x) => x.threadId === 'doomed'),
        'the doomed conversation is recalled before deletion (the check below is not vacuous)',
      );

      const res = await del(doomed);
      assert.deepEqual(res, { turns: 4, chunks: res.chunks, documents: 1 });
      assert.ok(res.chunks >= 3, `chunks of the turns and the note: ${res.chunks}`);

      const after = await search('erin', 'Zephyrine 4471 locker');
      assert.ok(after.hits.length > 0, 'erin still has other memories');
      for (const x of after.hits) {
        assert.notEqual(x.threadId, 'doomed');
        assert.ok(!/locker|4471|harbour|Pending/.test(x.content), `recalled deleted content: ${x.content}`);
      }
      assert.ok(after.hits.some((x) => x.documentKey === 'note:free'));
      assert.ok(after.hits.some((x) => x.threadId === 'kept'));
      await assert.rejects(messages(doomed), isCode('not_found'));
      await assert.rejects(del(doomed), isCode('not_found'), 'a second delete finds nothing');
      assert.deepEqual(
        (await list('erin')).conversations.map((c) => c.threadId),
        ['kept'],
      );
      // Nothing of it is left in any table, including work still pending for it.
      assert.equal(
        await count(`select count(*)::int as n from memory.conversations where user_id = 'erin' and thread_id = 'doomed'`, []),
        0,
      );
      assert.equal(
        await count(`select count(*)::int as n from memory.conversation_history where user_id = 'erin' and content ~ 'locker|Pending'`, []),
        0,
      );
      assert.equal(
        await count(`select count(*)::int as n from memory.vector_embeddings where user_id = $1 and content ~ '4471|locker'`, ['erin']),
        0,
      );
      assert.equal(await count(`select count(*)::int as n from memory.documents where user_id = 'erin' and doc_key = 'note:d1:0'`, []), 0);
      assert.equal((await upkeep.runOnce()).historyIndexed, 0, 'no pending indexing work left behind');
      // Bob's conversation under the same thread id is untouched.
      assert.ok((await search('bob', 'Zephyrine 4471')).hits.some((x) => x.content.includes('Bob also mentions')));
      assert.equal((await messages(ref('bob', 'doomed'))).messages.length, 1);
    });

    it('keeps late turns created before a deletion out, and stores turns created after it', async () => {
      const conv = ref('frank', 'late');
      await append(conv, [{ id: 'l1:user', content: 'Question about the Quokka project', createdAtMs: Date.now() - 1000 }]);
      // Created before the deletion began: how long the deletion takes (a busy machine) does not matter.
      const underWay = Date.now() - 1;
      await del(conv);
      // The answer (or a redelivered message) that was under way when the user deleted.
      const late = await append(conv, [
        { id: 'l1:assistant', role: 'assistant', source: 'assistant', content: 'Late Quokka answer', createdAtMs: underWay },
      ]);
      assert.equal(late.inserted, 0);
      assert.deepEqual((await list('frank')).conversations, [], 'the conversation is not recreated, not even empty');
      assert.ok(!(await search('frank', 'Quokka')).hits.some((x) => x.content.includes('Late Quokka')));
      // A new message afterwards starts the conversation afresh.
      const fresh = await append(conv, [{ id: 'l2:user', content: 'A new Quokka question', createdAtMs: Date.now() + 5 }]);
      assert.equal(fresh.inserted, 1);
      assert.deepEqual(
        (await messages(conv)).messages.map((t) => t.content),
        ['A new Quokka question'],
      );
      // Another user's turns are never held back by this erasure.
      assert.equal((await append(ref('bob', 'late'), [{ id: 'b', content: 'bob late', createdAtMs: Date.now() - 2000 }])).inserted, 1);
    });

    it('removes the chunks an indexing pass writes while the conversation is deleted', async () => {
      const conv = ref('gina', 'racing');
      for (let i = 0; i < 40; i++)
        await append(conv, [{ id: `r${i}`, content: `Racing turn ${i} about the Velodrome ${'x'.repeat(i)}` }], deferred);
      // Delete while the background indexer is (or is about to be) at work on them.
      const res = await del(conv);
      assert.equal(res.turns, 40);
      await upkeep.indexed(10_000);
      await upkeep.runOnce();
      assert.equal(await count(`select count(*)::int as n from memory.vector_embeddings where user_id = 'gina'`, []), 0);
      assert.equal(await count(`select count(*)::int as n from memory.conversation_history where user_id = 'gina'`, []), 0);
      assert.ok(!(await search('gina', 'Velodrome racing')).hits.length);
    });

    it("forgets all of a user's conversations and documents, and nobody else's", async () => {
      const bobBefore = await list('bob');
      const bobHits = (await search('bob', 'Rufus marimba Zephyrine')).hits.length;
      assert.ok(bobHits > 0);
      await h.upsertDocument(
        {
          userId: 'alice',
          key: 'note:profile',
          title: 'Profile',
          content: 'Alice likes Pixelbrook the cat.',
          source: 'user',
          origin: undefined,
        },
        ctx,
      );
      const n = (await list('alice')).conversations.length;
      assert.ok((await search('alice', 'Pixelbrook Kiruna quarterly')).hits.length > 0);

      const underWay = Date.now() - 1;
      const res = await forget('alice');
      assert.equal(res.conversations, n);
      assert.equal(res.documents, 1);
      assert.equal(res.turns, 8, 'every turn of every role');
      assert.ok(res.chunks >= 6);
      assert.deepEqual((await list('alice')).conversations, []);
      assert.deepEqual((await search('alice', 'Pixelbrook Kiruna quarterly radiator tuna')).hits, []);
      for (const table of ['conversations', 'conversation_history', 'documents', 'vector_embeddings'])
        assert.equal(await count(`select count(*)::int as n from memory.${table} where user_id = $1`, ['alice']), 0, table);

      assert.deepEqual(await list('bob'), bobBefore, "bob's conversations are untouched");
      assert.equal((await search('bob', 'Rufus marimba Zephyrine')).hits.length, bobHits);

      // A turn under way before the erasure stays out; a new one is stored.
      assert.equal((await append(ref('alice', 'pets'), [{ id: 'late', content: 'late', createdAtMs: underWay }])).inserted, 0);
      assert.deepEqual((await list('alice')).conversations, []);
      assert.equal((await append(ref('alice', 'new'), [{ id: 'n', content: 'hello again', createdAtMs: Date.now() + 5 }])).inserted, 1);
      assert.deepEqual(
        (await list('alice')).conversations.map((c) => c.threadId),
        ['new'],
      );
      // Forgetting a user with nothing stored is not an error.
      assert.deepEqual(await forget('nobody'), { conversations: 0, turns: 0, chunks: 0, documents: 0 });
    });

    it('prunes erasures once nothing under way can be that late', async () => {
      const before = await count(`select count(*)::int as n from memory.erasures`, []);
      assert.ok(before > 0);
      assert.equal(await store.pruneErasures(HOUR), 0, 'recent erasures are kept');
      await pool.query(`update memory.erasures set erased_at = now() - interval '2 hours' where user_id = 'frank'`);
      assert.equal(await store.pruneErasures(HOUR), 1);
      assert.equal(await count(`select count(*)::int as n from memory.erasures`, []), before - 1);
    });
  });
}
