// BeginTurn: the start of a chat turn in one round trip. The user turn is stored
// and the history before it read in one transaction (idempotent by turn id, so a
// redelivered turn reads the same history), recall runs alongside and may fail
// without failing the turn, and a bad request stores nothing. Runs the real
// handlers with the background indexer as `talon up` wires them, on both
// databases, and once over gRPC with mTLS and memory's caller allow-list.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { TalonError } from '@talon/kit/errors';
import { createClient, startGrpcServer, unary, type CallContext, type Metadata, type TlsMaterial } from '@talon/kit/grpc';
import { createCa, issueCert } from '@talon/kit/pki';
import { HashedLexicalEmbedder } from '@talon/embed';
import {
  BeginTurnRequest,
  MemoryServiceClient,
  MemoryServiceService,
  SearchRequest,
  type BeginTurnResponse,
  type ConversationRef,
  type Turn,
} from '@talon/proto';
import { BackgroundUpkeep, SEARCH_WAITS_FOR_INDEXING_MS } from '../src/background.ts';
import { MEMORY_CALLERS, memoryHandlers } from '../src/handlers.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../src/migrations.ts';
import { configureSearchSessions, MemoryStore, type SearchInput } from '../src/store.ts';
import { databaseKinds, startDb, type TestDb } from './databases.ts';

const DIM = 384;
const MODEL = 'hashed-lexical-v1';
const MAX_TURN_BYTES = 4096;
const ctx = { peer: 'orchestrator', method: 'test', metadata: undefined as unknown as Metadata } satisfies CallContext;

const conv = (threadId: string, userId = 'alice'): ConversationRef => ({ userId, channel: 'api', threadId });
const turn = (id: string, role: string, content: string): Turn => ({ id, role, content, source: '', createdAtMs: 0 });
const userTurn = (inboundId: string, content: string): Turn => ({
  id: `${inboundId}:user`,
  role: 'user',
  content,
  source: 'user',
  createdAtMs: Date.now(),
});
const ids = (turns: Turn[]) => turns.map((t) => t.id);
/** Recall as the orchestrator's Recall.search fills it: the conversation being answered left out. */
const recallFor = (c: ConversationRef, query: string, over: Partial<SearchRequest> = {}): SearchRequest =>
  SearchRequest.fromPartial({ userId: c.userId, query, limit: 5, excludeConversation: c, sources: [], minSimilarity: 0, ...over });

for (const { kind, skip } of await databaseKinds()) {
  describe(`BeginTurn on the ${kind} database`, { skip }, () => {
    let db: TestDb;
    let pool: Pool;
    let store: MemoryStore;
    let upkeep: BackgroundUpkeep;
    let h: ReturnType<typeof memoryHandlers>;
    const logged: Array<{ msg: string; err?: { message: string }; code?: string }> = [];

    before(async () => {
      db = await startDb(kind);
      pool = createPool(db.url, { max: 4, applicationName: 'memory-begin-turn-test' });
      configureSearchSessions(pool, { efSearch: 100 });
      const quiet = createLogger({ service: 'test', level: 'silent' });
      await migrate(pool, MEMORY_SCHEMA, memoryMigrations, quiet);
      store = new MemoryStore(pool, {
        model: MODEL,
        dim: DIM,
        embedder: new HashedLexicalEmbedder(DIM),
        chunk: { size: 500, overlap: 80 },
        candidates: 40,
        rrfK: 60,
      });
      upkeep = new BackgroundUpkeep({
        store,
        log: quiet,
        batch: 64,
        idleMs: 60_000,
        hnsw: { m: 16, efConstruction: 64, buildMemoryMb: 64 },
      });
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) logged.push(JSON.parse(line) as (typeof logged)[number]);
          done();
        },
      });
      h = memoryHandlers(store, {
        onTurnsStored: (c) => upkeep.indexSoon(c),
        beforeSearch: (q: SearchInput) => upkeep.indexedFor(q.userId, q.exclude, SEARCH_WAITS_FOR_INDEXING_MS),
        maxTurnBytes: MAX_TURN_BYTES,
        maxDocumentBytes: 1024 * 1024,
        searchMaxLimit: 50,
        hnsw: { m: 16, efConstruction: 64 },
        log: createLogger({ service: 'memory', level: 'warn', destination: sink }),
      });
    });
    after(async () => {
      await upkeep?.stop();
      await pool?.end();
      await db?.close();
    });

    const begin = (req: Partial<BeginTurnRequest>) => h.beginTurn(BeginTurnRequest.fromPartial(req), ctx) as Promise<BeginTurnResponse>;
    const append = (c: ConversationRef, turns: Turn[]) => h.appendTurns({ conversation: c, turns }, ctx);
    const rows = async (c: ConversationRef, turnId?: string): Promise<number> => {
      const r = await pool.query<{ n: number }>(
        `select count(*)::int as n from memory.conversation_history h join memory.conversations c on c.id = h.conversation_id
          where c.user_id = $1 and c.channel = $2 and c.thread_id = $3 and ($4::text is null or h.turn_id = $4)`,
        [c.userId, c.channel, c.threadId, turnId ?? null],
      );
      return r.rows[0]!.n;
    };
    const conversations = async (c: ConversationRef): Promise<number> => {
      const r = await pool.query<{ n: number }>(
        'select count(*)::int as n from memory.conversations where user_id = $1 and channel = $2 and thread_id = $3',
        [c.userId, c.channel, c.threadId],
      );
      return r.rows[0]!.n;
    };

    it('stores the user turn and returns the history before it, without it and without tool records', async () => {
      const c = conv('history');
      await append(c, [
        turn('m1:user', 'user', 'hello'),
        turn('m1:tool:0', 'tool', '{"ok":true}'),
        turn('m1:assistant', 'assistant', 'hi'),
      ]);
      const res = await begin({ conversation: c, userTurn: userTurn('m2', 'how are you?'), historyLimit: 10 });
      assert.deepEqual(ids(res.history), ['m1:user', 'm1:assistant'], 'oldest first, tool records left out');
      assert.equal(res.history[1]!.role, 'assistant');
      assert.equal(res.history[1]!.content, 'hi');
      assert.deepEqual(res.recalled, []);
      assert.equal(res.recallFailed, false);
      assert.equal(await rows(c, 'm2:user'), 1, 'the user turn is stored');
      const stored = await h.getHistory({ conversation: c, limit: 10, roles: ['user', 'assistant'] }, ctx);
      assert.deepEqual(ids(stored.turns), ['m1:user', 'm1:assistant', 'm2:user']);
      const limited = await begin({ conversation: c, userTurn: userTurn('m3', 'and now?'), historyLimit: 2 });
      assert.deepEqual(ids(limited.history), ['m1:assistant', 'm2:user'], 'the most recent history_limit turns');
    });

    it('a redelivered turn (same turn id) stores one row and gets the same history', async () => {
      const c = conv('redelivery');
      await append(c, [turn('r1:user', 'user', 'first question'), turn('r1:assistant', 'assistant', 'first answer')]);
      const req = { conversation: c, userTurn: userTurn('r2', 'second question'), historyLimit: 10 };
      const first = await begin(req);
      assert.deepEqual(ids(first.history), ['r1:user', 'r1:assistant']);
      const again = await begin(req);
      assert.deepEqual(again.history, first.history);
      assert.equal(await rows(c, 'r2:user'), 1, 'one row for the turn id');
      // The first attempt got as far as recording its answer before it died.
      await append(c, [turn('r2:assistant', 'assistant', 'second answer')]);
      const late = await begin(req);
      assert.deepEqual(late.history, first.history, 'nothing stored after the user turn either');
      assert.equal(await rows(c, 'r2:user'), 1);
      // Concurrent duplicates (two replicas with the same delivery) agree too.
      const both = await Promise.all([begin(req), begin(req)]);
      assert.deepEqual(both[0].history, first.history);
      assert.deepEqual(both[1].history, first.history);
      assert.equal(await rows(c), 4);
    });

    it('history_limit 0 reads no history; an absent user turn stores nothing', async () => {
      const c = conv('limits');
      await append(c, [turn('l1:user', 'user', 'one'), turn('l1:assistant', 'assistant', 'two')]);
      const none = await begin({ conversation: c, userTurn: userTurn('l2', 'three'), historyLimit: 0 });
      assert.deepEqual(none.history, []);
      assert.equal(await rows(c, 'l2:user'), 1, 'stored all the same');
      const unrecorded = await begin({ conversation: c, historyLimit: 10 });
      assert.deepEqual(ids(unrecorded.history), ['l1:user', 'l1:assistant', 'l2:user'], 'the most recent turns');
      assert.equal(await rows(c), 3, 'nothing stored');
      const fresh = conv('never-recorded');
      const empty = await begin({ conversation: fresh, historyLimit: 10 });
      assert.deepEqual(empty.history, []);
      assert.equal(await conversations(fresh), 0, 'no conversation created');
      const huge = await begin({ conversation: c, historyLimit: 4_294_967_295 });
      assert.equal(huge.history.length, 3, 'a huge limit is capped, not refused');
    });

    it("recalls from the user's other conversations, never the one being answered nor another user's", async () => {
      const here = conv('recall-here');
      const there = conv('recall-there');
      await append(there, [turn('x1:user', 'user', 'my bicycle is a green gazelle')]);
      await append(here, [turn('y1:user', 'user', 'the gazelle bicycle in this very conversation')]);
      await append(conv('recall-bob', 'bob'), [turn('z1:user', 'user', "bob's gazelle bicycle")]);
      await upkeep.indexed(10_000);
      const res = await begin({
        conversation: here,
        userTurn: userTurn('y2', 'which bicycle do I have?'),
        historyLimit: 5,
        recall: recallFor(here, 'gazelle bicycle'),
      });
      assert.equal(res.recallFailed, false);
      assert.ok(res.recalled.length > 0, 'something recalled');
      assert.ok(
        res.recalled.some((x) => x.threadId === 'recall-there' && x.content.includes('green gazelle')),
        'the other conversation is recalled',
      );
      assert.ok(!res.recalled.some((x) => x.threadId === 'recall-here'), 'the conversation being answered is left out');
      assert.ok(!res.recalled.some((x) => x.content.includes('bob')), "bob's memory is never returned");
      assert.deepEqual(ids(res.history), ['y1:user']);
      // The control: without the exclusion the conversation's own turn is found, so the check above means something.
      const all = await begin({ conversation: here, recall: recallFor(here, 'gazelle bicycle', { excludeConversation: undefined }) });
      assert.ok(all.recalled.some((x) => x.threadId === 'recall-here'));
    });

    it('a recall that fails leaves the turn stored and answered without recall (recall_failed)', async () => {
      const c = conv('recall-fails');
      await append(c, [turn('f1:user', 'user', 'earlier')]);
      logged.length = 0;
      const wrongDim = await begin({
        conversation: c,
        userTurn: userTurn('f2', 'now'),
        historyLimit: 5,
        recall: recallFor(c, 'anything', { queryEmbedding: { model: MODEL, dim: 3, values: [0.1, 0.2, 0.3] } }),
      });
      assert.equal(wrongDim.recallFailed, true);
      assert.deepEqual(wrongDim.recalled, []);
      assert.deepEqual(ids(wrongDim.history), ['f1:user']);
      assert.equal(await rows(c, 'f2:user'), 1, 'the user turn is stored anyway');
      const warn = logged.find((l) => l.msg.includes('recall failed'));
      assert.ok(warn, 'memory logs the failure');
      assert.equal(warn.code, 'invalid_argument');
      assert.match(
        warn.err?.message ?? '',
        /recall\.query_embedding is hashed-lexical-v1\/3 but memory is configured for hashed-lexical-v1\/384/,
      );

      // Whatever the search itself fails with (here: the database refusing it).
      const original = store.search.bind(store);
      store.search = () => Promise.reject(new Error('canceling statement due to statement timeout'));
      try {
        const res = await begin({ conversation: c, userTurn: userTurn('f3', 'later'), historyLimit: 5, recall: recallFor(c, 'anything') });
        assert.equal(res.recallFailed, true);
        assert.deepEqual(ids(res.history), ['f1:user', 'f2:user']);
        assert.equal(await rows(c, 'f3:user'), 1);
      } finally {
        store.search = original;
      }
      assert.ok(logged.some((l) => l.err?.message.includes('statement timeout')));
    });

    it('a user turn created before the conversation was deleted is not stored again, and leaves no trace', async () => {
      const c = conv('erased');
      const late = userTurn('e1', 'sent just before the delete');
      await append(c, [turn('e0:user', 'user', 'to be forgotten')]);
      await h.deleteConversation({ conversation: c }, ctx);
      const res = await begin({ conversation: c, userTurn: late, historyLimit: 5, recall: recallFor(c, 'forgotten') });
      assert.deepEqual(res.history, []);
      assert.equal(res.recallFailed, false);
      assert.ok(!res.recalled.some((x) => x.threadId === 'erased'));
      assert.equal(await conversations(c), 0, 'not even an empty conversation');
      const fresh = await begin({ conversation: c, userTurn: userTurn('e2', 'a new start'), historyLimit: 5 });
      assert.deepEqual(fresh.history, []);
      assert.equal(await rows(c), 1, 'a turn created after the delete is stored');
    });

    it('fails the whole call when storing the user turn or reading the history fails', async () => {
      const original = store.beginTurn.bind(store);
      store.beginTurn = () => Promise.reject(new Error('connection terminated'));
      try {
        await assert.rejects(
          begin({
            conversation: conv('store-fails'),
            userTurn: userTurn('s1', 'x'),
            historyLimit: 5,
            recall: recallFor(conv('store-fails'), 'x'),
          }),
          /connection terminated/,
        );
      } finally {
        store.beginTurn = original;
      }
    });

    it('refuses an invalid request with INVALID_ARGUMENT and stores nothing', async () => {
      const c = conv('invalid');
      const refused = async (req: Partial<BeginTurnRequest>, message: RegExp, where = c) => {
        await assert.rejects(
          begin(req),
          (e: unknown) => e instanceof TalonError && e.code === 'invalid_argument' && message.test(e.message),
        );
        assert.equal(await conversations(where), 0, `nothing stored for ${message}`);
      };
      const ok = userTurn('i1', 'fine');
      await refused(
        { conversation: c, userTurn: userTurn('i1', 'x'.repeat(MAX_TURN_BYTES + 1)), historyLimit: 5 },
        /^user_turn\.content is 4097 bytes; the limit is 4096$/,
      );
      await refused({ conversation: c, userTurn: userTurn('i1', 'a\u0000b') }, /^user_turn\.content contains a NUL character$/);
      await refused({ conversation: c, userTurn: { ...ok, id: 'bad id' } }, /^user_turn\.id must be/);
      await refused({ conversation: c, userTurn: { ...ok, role: 'boss' } }, /^user_turn\.role must be one of/);
      await refused({ conversation: c, userTurn: { ...ok, source: 'rumour' } }, /^user_turn\.source must be one of/);
      const badThread = { ...c, threadId: 'has space' };
      await refused({ conversation: badThread, userTurn: ok }, /^conversation\.thread_id must be 1-200 characters/, badThread);
      await refused({ conversation: { ...c, userId: '' }, userTurn: ok }, /^conversation\.user_id must be/);
      await refused({ userTurn: ok }, /^conversation is required$/);
      // The recall part is validated as Search validates it, before anything is stored.
      await refused(
        { conversation: c, userTurn: ok, recall: recallFor(c, 'q', { sources: ['gossip'] }) },
        /^recall: sources may contain only/,
      );
      await refused({ conversation: c, userTurn: ok, recall: recallFor(c, 'q', { minSimilarity: 2 }) }, /^recall: min_similarity must be/);
      await refused({ conversation: c, userTurn: ok, recall: recallFor(c, 'x'.repeat(9000)) }, /^recall: query is 9000 bytes/);
      await refused(
        { conversation: c, userTurn: ok, recall: recallFor(c, 'q', { userId: 'bob', excludeConversation: undefined }) },
        /^recall\.user_id must equal conversation\.user_id$/,
      );
      await refused(
        { conversation: c, userTurn: ok, recall: recallFor(c, 'q', { excludeConversation: conv('x', 'bob') }) },
        /^recall: exclude_conversation\.user_id must equal user_id$/,
      );
      assert.equal(await rows(c), 0);
    });

    it('over gRPC with mTLS: answers the orchestrator (absent and present parts survive the wire), refuses any other caller', async () => {
      const ca = await createCa();
      const tls = async (name: string): Promise<TlsMaterial> => {
        const leaf = await issueCert(ca, { name });
        return { ca: Buffer.from(ca.certPem), cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
      };
      const server = await startGrpcServer({
        name: 'memory',
        host: '127.0.0.1',
        port: 0,
        tls: await tls('memory'),
        log: createLogger({ service: 'test', level: 'silent' }),
        // As main.ts registers the service.
        services: [{ definition: MemoryServiceService, handlers: h, allow: MEMORY_CALLERS }],
      });
      server.setServing('SERVING');
      const c = conv('wire');
      const orchestrator = createClient(MemoryServiceClient, `127.0.0.1:${server.port}`, await tls('orchestrator'), 'memory');
      const gateway = createClient(MemoryServiceClient, `127.0.0.1:${server.port}`, await tls('gateway'), 'memory');
      try {
        await unary(orchestrator, orchestrator.appendTurns, {
          conversation: c,
          turns: [turn('w1:user', 'user', 'a penguin named Otto')],
        });
        const other = conv('wire-other');
        await unary(orchestrator, orchestrator.appendTurns, {
          conversation: other,
          turns: [turn('o1:user', 'user', 'Otto the penguin')],
        });
        const req = { conversation: c, userTurn: userTurn('w2', 'who is Otto?'), historyLimit: 5, recall: recallFor(c, 'Otto penguin') };
        const res = await unary(orchestrator, orchestrator.beginTurn, req);
        assert.deepEqual(ids(res.history), ['w1:user']);
        assert.equal(res.recallFailed, false);
        assert.ok(res.recalled.some((x) => x.threadId === 'wire-other'));
        assert.ok(!res.recalled.some((x) => x.threadId === 'wire'));
        const bare = await unary(orchestrator, orchestrator.beginTurn, { conversation: c, historyLimit: 0 });
        assert.deepEqual(bare, { history: [], recalled: [], recallFailed: false });
        const stored = await unary(orchestrator, orchestrator.getHistory, { conversation: c, limit: 10, roles: [] });
        assert.deepEqual(ids(stored.turns), ['w1:user', 'w2:user']);

        for (const call of [
          () => unary(gateway, gateway.beginTurn, { ...req, userTurn: userTurn('w3', 'sneaky') }),
          () => unary(gateway, gateway.appendTurns, { conversation: c, turns: [userTurn('w3', 'sneaky')] }),
        ]) {
          await assert.rejects(
            call(),
            (e: unknown) => e instanceof TalonError && e.code === 'permission_denied' && /spiffe:\/\/talon\/gateway/.test(e.message),
          );
        }
        const later = await unary(orchestrator, orchestrator.getHistory, { conversation: c, limit: 10, roles: [] });
        assert.deepEqual(ids(later.turns), ['w1:user', 'w2:user'], 'the refused caller stored nothing');
      } finally {
        orchestrator.close();
        gateway.close();
        await server.shutdown(1000);
      }
    });
  });
}
