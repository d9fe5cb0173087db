// A remote (OpenAI-compatible) embedding model end to end: memory never talks to
// the outside, so the orchestrator embeds through egress — the background worker
// leases new chunks from memory and stores their vectors, and each recall query
// is embedded before memory is searched. Changing the model and dimension
// re-embeds everything in the background without blocking startup.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createClient, unary } from '@talon/kit/grpc';
import { MemoryServiceClient } from '@talon/proto';
import { receivedTexts, startFakeLlm, startTestPlatform, type FakeLlm, type TestPlatform } from '@talon/testkit';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('remote embeddings computed by the orchestrator through egress', () => {
  let fake: FakeLlm;
  let tp: TestPlatform;
  let db: pg.Client;
  let alice: string;
  let bob: string;

  const embedded = async (model: string, dim: number) => {
    const { rows } = await db.query(
      `select count(*)::int as n, (count(*) filter (where embedding_model = $1 and embedding_dim = $2))::int as ok from memory.vector_embeddings`,
      [model, dim],
    );
    return rows[0] as { n: number; ok: number };
  };
  const status = () => {
    const client = createClient(MemoryServiceClient, `127.0.0.1:${tp.ports.grpc.memory}`, tp.platform.tls('orchestrator'), 'memory');
    return unary(client, client.getEmbeddingStatus, {});
  };

  before(async () => {
    fake = await startFakeLlm();
    tp = await startTestPlatform({
      llm: false,
      env: {
        TALON_LLM_BASE_URL: fake.url,
        TALON_LLM_MODEL: 'fake-model',
        TALON_LLM_API_KEY_SECRET: 'none',
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${fake.port}`,
        TALON_EMBEDDINGS_PROVIDER: 'openai',
        TALON_EMBEDDINGS_BASE_URL: fake.url,
        TALON_EMBEDDINGS_MODEL: 'text-embedding-3-small',
        TALON_EMBEDDINGS_DIM: '64',
        ORCHESTRATOR_EMBEDDINGS_API_KEY_SECRET: 'none',
        ORCHESTRATOR_REEMBED_IDLE_MS: '300',
      },
    });
    db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
    alice = await tp.token('alice');
    bob = await tp.token('bob');
  });
  after(async () => {
    await db?.end();
    await tp?.stop();
    await fake?.close();
  });

  it('embeds stored turns and recall queries through egress, scoped per user', async () => {
    const r = await tp.chat(
      alice,
      { messages: [{ role: 'user', content: 'My bicycle is a green Crescent with a basket.' }] },
      { 'x-talon-conversation': 'bike' },
    );
    assert.equal(r.status, 200, r.text);
    await waitFor('chunks embedded by the orchestrator', async () => {
      const e = await embedded('text-embedding-3-small', 64);
      return e.n >= 2 && e.ok === e.n ? e : undefined;
    });
    const first = fake.embeddingRequests[0]!;
    assert.equal(first.path, '/v1/embeddings');
    assert.equal(first.body.model, 'text-embedding-3-small');
    assert.equal(first.body.dimensions, 64);
    assert.equal(first.headers.authorization, undefined, 'no key configured: no Authorization header');

    const before = fake.embeddingRequests.length;
    const asked = await tp.chat(
      alice,
      { messages: [{ role: 'user', content: 'What colour is my bicycle?' }] },
      { 'x-talon-conversation': 'colours' },
    );
    assert.equal(asked.status, 200, asked.text);
    assert.ok(
      fake.embeddingRequests.slice(before).some((q) => JSON.stringify(q.body.input) === JSON.stringify(['What colour is my bicycle?'])),
      'the recall query was embedded by the orchestrator',
    );
    const texts = receivedTexts(fake.requests.at(-1)!);
    assert.ok(texts.some((m) => m.role === 'user' && /<untrusted source="memory"[^>]*>\nMy bicycle is a green Crescent/.test(m.text)));

    const b = await tp.chat(
      bob,
      { messages: [{ role: 'user', content: 'What colour is my bicycle?' }] },
      { 'x-talon-conversation': 'colours' },
    );
    assert.equal(b.status, 200);
    assert.ok(!receivedTexts(fake.requests.at(-1)!).some((m) => m.text.includes('green Crescent')), "bob's context holds alice's bicycle");
  });

  it('re-embeds everything in the background after a model and dimension change', async () => {
    const env = tp.platform.opts.env!;
    env.TALON_EMBEDDINGS_MODEL = 'text-embedding-3-large';
    env.TALON_EMBEDDINGS_DIM = '32';
    await tp.platform.stopService('orchestrator');
    await tp.platform.stopService('memory');
    tp.platform.startService('memory');
    tp.platform.startService('orchestrator');
    await tp.platform.waitHealthy(['memory', 'orchestrator']);
    const done = await waitFor('re-embedding with the new model', async () => {
      const e = await embedded('text-embedding-3-large', 32);
      return e.n > 0 && e.ok === e.n ? e : undefined;
    });
    assert.ok(done.n >= 6);
    assert.ok(fake.embeddingRequests.some((q) => q.body.model === 'text-embedding-3-large' && q.body.dimensions === 32));
    const st = await waitFor('the HNSW index of the new dimension', async () => {
      const s = await status();
      return s.indexReady ? s : undefined;
    });
    assert.deepEqual([st.model, st.dim, st.local, st.current === st.chunks], ['text-embedding-3-large', 32, false, true]);
    const { rows } = await db.query(
      `select indexname from pg_indexes where schemaname = 'memory' and indexname like 'vector_embeddings_hnsw_%'`,
    );
    assert.deepEqual(
      rows.map((x) => x.indexname),
      [rows.find((x) => String(x.indexname).startsWith('vector_embeddings_hnsw_d32_'))?.indexname],
      'only the index of the configured dimension is left',
    );
    const asked = await tp.chat(
      alice,
      { messages: [{ role: 'user', content: 'Remind me about my bicycle' }] },
      { 'x-talon-conversation': 'after-change' },
    );
    assert.equal(asked.status, 200);
    assert.ok(receivedTexts(fake.requests.at(-1)!).some((m) => m.text.includes('green Crescent')));
  });
});
