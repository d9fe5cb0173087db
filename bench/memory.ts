// Memory benchmark: ingest rate with the local embedder, hybrid search latency at
// 10k and 100k chunks, HNSW recall@10 against exact search (with an ef_search
// sweep), and recall@5 on the labelled set in test/fixtures/recall.
// Runs on a PostgreSQL server (a database of its own, dropped afterwards) and on
// the embedded default (PGlite with pgvector served by packages/cli/src/db/pglite-server.ts,
// reached with the same pg driver the service uses).
//   node_modules/.bin/node bench/memory.ts [--database native|embedded|both] [--sizes 10000,100000]
//        [--queries 300] [--embedded-budget-s 420]
// Native: postgres://postgres@127.0.0.1:5432/postgres (TALON_TEST_DATABASE_URL overrides).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { benchArgs } from './args.ts';
import pg from 'pg';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, pgClientConfig, type Pool } from '@talon/kit/db';
import { formatDatabaseUrl, parseDatabaseUrl } from '@talon/kit/database-url';
import { HashedLexicalEmbedder } from '@talon/embed';
import { nativeAdminUrl } from '@talon/testkit';
import { memorySpec } from '../services/memory/src/config.ts';
import { MEMORY_SCHEMA, memoryMigrations } from '../services/memory/src/migrations.ts';
import { configureSearchSessions, MemoryStore } from '../services/memory/src/store.ts';
import { createHnswIndexSql, hnswIndexName, vectorLiteral } from '../services/memory/src/sql.ts';
import { ingestRecallSet, loadRecallSet, recallAtK } from '../services/memory/test/recall-fixture.ts';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({
  options: {
    database: { type: 'string', default: 'both' },
    sizes: { type: 'string', default: '10000,100000' },
    queries: { type: 'string', default: '300' },
    'embedded-budget-s': { type: 'string', default: '420' },
    // Leave the native database in place for investigation (its URL is printed).
    'keep-db': { type: 'boolean', default: false },
  },
});
const SIZES = values.sizes.split(',').map(Number);
const NQ = Number(values.queries);
const EMBEDDED_BUDGET_MS = Number(values['embedded-budget-s']) * 1000;
// The service's defaults (MEMORY_* keys unset).
const D = memorySpec({ MEMORY_DATABASE_URL: 'postgres://unused' });
const def = <T>(f: { parse(raw: string | undefined): T }): T => f.parse(undefined);
const DIM = def(D.embeddingsDim);
const HNSW = { m: def(D.hnswM), efConstruction: def(D.hnswEfConstruction) };
const EF_SEARCH = def(D.hnswEfSearch);
const STORE = {
  chunk: { size: def(D.chunkChars), overlap: def(D.chunkOverlapChars) },
  candidates: def(D.searchCandidates),
  rrfK: def(D.rrfK),
  maxTermFreq: def(D.textMaxTermFreq),
};
const USER = 'bench-user';
const log = createLogger({ service: 'bench', level: 'silent' });
const embedder = new HashedLexicalEmbedder(DIM);
const ROOT = resolve(import.meta.dirname, '..');

// ---------- a deterministic corpus of real text ----------

/**
 * Real text, offline and deterministic (node_modules is pinned by the lockfile):
 * the Markdown, text, TypeScript and JavaScript files under node_modules (sorted,
 * prose first), cut into 600-character pieces that overlap by 150 characters like
 * the service's own chunks, deduplicated, minified code and data blobs skipped. Real vocabulary matters: synthetic word salad
 * has no topical structure, which makes both ranking and HNSW unrealistically hard.
 */
function realCorpus(root: string, want: number): string[] {
  const files: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (
        /\.(md|markdown|txt|rst|ts|js|mjs|cjs|html|css|ya?ml)$/.test(n) &&
        !n.endsWith('.min.js') &&
        st.size > 1500 &&
        st.size < 2_000_000
      )
        files.push(p);
    }
  };
  walk(root);
  const kind = (f: string) => (/\.(md|markdown|txt|rst)$/.test(f) ? 0 : f.endsWith('.d.ts') ? 1 : 2);
  files.sort((x, y) => kind(x) - kind(y) || (x < y ? -1 : 1));
  const seen = new Set<string>();
  const out: string[] = [];
  for (const f of files) {
    const text = readFileSync(f, 'utf8').replace(/\r/g, '');
    for (let i = 0; i < text.length && out.length < want; i += 450) {
      const c = text.slice(i, i + 600).trim();
      // Skip minified code and data blobs: memory holds prose, notes and readable code.
      if (c.length < 200 || c.includes('\u0000') || c.split(/\s+/).length < c.length / 14 || seen.has(c)) continue;
      seen.add(c);
      out.push(c);
    }
    if (out.length >= want) break;
  }
  return out;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeCorpus(total: number, seed: number) {
  const r = rng(seed);
  const pieces = realCorpus(join(ROOT, 'node_modules'), total);
  // Shuffle deterministically so every size mixes prose and code.
  for (let i = pieces.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
  }
  let next = 0;
  const passage = () => pieces[next++ % pieces.length]!;
  /** A query: a 3-6 word span of a piece of text. */
  const queryFrom = (text: string) => {
    const ws = text.split(/\s+/).filter((w) => w !== '');
    const n = 3 + Math.floor(r() * 4);
    const at = Math.floor(r() * Math.max(1, ws.length - n));
    return ws.slice(at, at + n).join(' ');
  };
  return { passage, queryFrom, r, size: pieces.length };
}

// ---------- databases ----------

interface Db {
  kind: 'native' | 'embedded';
  url: string;
  close(): Promise<void>;
}

async function nativeDb(): Promise<Db> {
  const admin = nativeAdminUrl();
  const name = `talon_bench_memory_${process.pid}`;
  const c = new pg.Client(pgClientConfig(admin));
  await c.connect();
  await c.query(`drop database if exists ${name} with (force)`);
  await c.query(`create database ${name}`);
  await c.end();
  const url = formatDatabaseUrl({ ...parseDatabaseUrl(admin), database: name });
  const d = new pg.Client(pgClientConfig(url));
  await d.connect();
  await d.query('create extension if not exists vector');
  await d.end();
  return {
    kind: 'native',
    url,
    async close() {
      const x = new pg.Client(pgClientConfig(admin));
      await x.connect();
      await x.query(`drop database if exists ${name} with (force)`);
      await x.end();
    },
  };
}

async function embeddedDb(): Promise<Db & { proc: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), 'talon-bench-pglite-'));
  // Port 0: the server binds a free port and prints it in its "pglite ready" line.
  const proc = spawn(process.execPath, [join(ROOT, 'packages/cli/src/db/pglite-server.ts'), '--data', dir, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { PATH: process.env.PATH, NODE_OPTIONS: '--max-old-space-size=4096' },
  });
  const port = await new Promise<number>((ok, fail) => {
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out
        .split('\n')
        .slice(0, -1)
        .find((l) => l.includes('"pglite ready"'));
      if (line) ok((JSON.parse(line) as { port: number }).port);
    });
    proc.once('exit', (code) => fail(new Error(`pglite exited with ${code}`)));
  });
  return {
    kind: 'embedded',
    proc,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async close() {
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([done, new Promise((r) => setTimeout(r, 30_000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------- measurements ----------

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await fn();
  return [performance.now() - t0, r];
}

/**
 * Ingest through the service path (chunking, local embedding, one transaction per
 * document, GIN and HNSW maintained) with `writers` concurrent writers.
 */
async function ingestViaStore(store: MemoryStore, corpus: ReturnType<typeof makeCorpus>, chunks: number, texts: string[], writers: number) {
  let done = 0;
  let doc = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (done < chunks) {
        // ~3 chunks per document with 1000-character chunks.
        const content = Array.from({ length: 4 }, corpus.passage).join('\n\n');
        texts.push(content);
        const r = await store.upsertDocument({ userId: USER, key: `ingest:${doc++}`, title: '', content, source: 'user' });
        done += r.chunks;
      }
    }),
  );
  return { chunks: done, ms: performance.now() - t0 };
}

/** Fast bulk load for growing the table (multi-row inserts of pre-embedded chunks), without the index. */
async function bulkLoad(pool: Pool, corpus: ReturnType<typeof makeCorpus>, n: number, texts: string[], deadline: number): Promise<number> {
  let loaded = 0;
  const perDoc = 100;
  while (loaded < n && Date.now() < deadline) {
    const batch = Array.from({ length: Math.min(perDoc, n - loaded) }, corpus.passage);
    const vecs = await embedder.embed(batch);
    const client = await pool.connect();
    try {
      await client.query('begin');
      const { rows } = await client.query<{ id: string }>(
        `insert into memory.documents (user_id, doc_key, title, source, content_sha256, content_chars) values ($1, $2, '', 'user', 'bulk', 0) returning id`,
        [USER, `bulk:${loaded}`],
      );
      const params: unknown[] = [];
      const tuples = batch.map((t, i) => {
        params.push(t, vectorLiteral(vecs[i]!));
        const b = i * 2;
        return `($1, $2::uuid, 'user', ${i}, $${b + 3}, $${b + 4}::vector, '${embedder.model}', ${DIM}, now())`;
      });
      await client.query(
        `insert into memory.vector_embeddings (user_id, document_id, source, seq, content, embedding, embedding_model, embedding_dim, embedded_at) values ${tuples.join(',')}`,
        [USER, rows[0]!.id, ...params],
      );
      await client.query('commit');
    } finally {
      client.release();
    }
    texts.push(...batch);
    loaded += batch.length;
  }
  return loaded;
}

async function searchLatency(store: MemoryStore, queries: readonly string[]) {
  for (const q of queries.slice(0, 20)) await store.search({ userId: USER, query: q, limit: 10 }); // warm-up
  const hybrid: number[] = [];
  const text: number[] = [];
  const vector: number[] = [];
  for (const q of queries) {
    hybrid.push((await timed(() => store.search({ userId: USER, query: q, limit: 10 })))[0]);
    text.push((await timed(() => store.search({ userId: USER, query: q, limit: 10 }, { vector: false })))[0]);
    vector.push((await timed(() => store.search({ userId: USER, query: '', limit: 10, vector: embedder.embedOne(q) })))[0]);
  }
  return { hybrid: summarize(hybrid), text: summarize(text), vector: summarize(vector) };
}

/** HNSW recall@10 against exact search (the untyped expression cannot use the index) for several ef_search values. */
async function hnswRecall(pool: Pool, queries: readonly string[], efs: readonly number[]) {
  const client = await pool.connect();
  try {
    const ann = `select id from memory.vector_embeddings where user_id = $1 and embedding_dim = ${DIM} and embedding_model = $2
                  order by embedding::vector(${DIM}) <-> $3::vector(${DIM}) limit 10`;
    const exact = `select id from memory.vector_embeddings where user_id = $1 and embedding_dim = ${DIM} and embedding_model = $2
                    order by embedding <-> $3::vector limit 10`;
    const truth: string[][] = [];
    for (const q of queries)
      truth.push(
        (await client.query<{ id: string }>(exact, [USER, embedder.model, vectorLiteral(embedder.embedOne(q))])).rows.map((r) => r.id),
      );
    const out: Array<{ ef: number; recall: number; p50: number; p99: number }> = [];
    for (const ef of efs) {
      await client.query(`set hnsw.ef_search = ${ef}`);
      let hit = 0;
      const lat: number[] = [];
      for (const [i, q] of queries.entries()) {
        const v = vectorLiteral(embedder.embedOne(q));
        const [ms, res] = await timed(() => client.query<{ id: string }>(ann, [USER, embedder.model, v]));
        lat.push(ms);
        const want = new Set(truth[i]);
        hit += res.rows.filter((r) => want.has(r.id)).length;
      }
      const s = summarize(lat);
      out.push({ ef, recall: hit / (10 * queries.length), p50: s.p50, p99: s.p99 });
    }
    await client.query(`set hnsw.ef_search = ${EF_SEARCH}`);
    return out;
  } finally {
    client.release();
  }
}

async function buildIndex(pool: Pool): Promise<number> {
  const c = await pool.connect();
  try {
    await c.query(`drop index if exists memory.${hnswIndexName(DIM, HNSW)}`);
    await c.query(`set maintenance_work_mem = '1GB'`);
    const [ms] = await timed(() => c.query(createHnswIndexSql(DIM, HNSW, false)));
    await c.query('reset maintenance_work_mem');
    await c.query('analyze memory.vector_embeddings');
    return ms;
  } finally {
    c.release();
  }
}

interface StageResult {
  db: string;
  chunks: number;
  ingestPerSec?: number;
  ingest4PerSec?: number;
  indexBuildMs?: number;
  lat: Awaited<ReturnType<typeof searchLatency>>;
  recall: Awaited<ReturnType<typeof hnswRecall>>;
  smallUser?: ReturnType<typeof summarize>;
}

async function runDatabase(
  kind: 'native' | 'embedded',
  budgetMs: number,
): Promise<{ stages: StageResult[]; fixture: string; notes: string[] }> {
  const deadline = Date.now() + budgetMs;
  const db = kind === 'native' ? await nativeDb() : await embeddedDb();
  // As many connections as the service's default pool, so the two halves and four writers run concurrently.
  const pool = createPool(db.url, { max: 8, applicationName: 'talon-bench-memory' });
  configureSearchSessions(pool, { efSearch: EF_SEARCH });
  const notes: string[] = [];
  try {
    await migrate(pool, MEMORY_SCHEMA, memoryMigrations, log);
    const store = new MemoryStore(pool, { model: embedder.model, dim: DIM, embedder, ...STORE });

    // Quality on the labelled set (its own user, so it does not disturb the synthetic one).
    const set = loadRecallSet();
    await ingestRecallSet(store, 'fixture-user', set.docs);
    const fx = {
      hybrid: await recallAtK(store, 'fixture-user', set.queries, 5, 'hybrid', embedder),
      text: await recallAtK(store, 'fixture-user', set.queries, 5, 'text', embedder),
      vector: await recallAtK(store, 'fixture-user', set.queries, 5, 'vector', embedder),
      at1: await recallAtK(store, 'fixture-user', set.queries, 1, 'hybrid', embedder),
    };
    const fixture = `recall@5 hybrid ${fmt(fx.hybrid.recall, 3)}, full text only ${fmt(fx.text.recall, 3)}, vector only ${fmt(fx.vector.recall, 3)}; hybrid recall@1 ${fmt(fx.at1.recall, 3)} (${set.queries.length} queries, ${set.docs.length} docs)`;

    // A small second user whose rows are a needle in the big user's haystack (filtered HNSW path).
    const corpus = makeCorpus(Math.max(...SIZES) + 2000, 42);
    const smallTexts: string[] = [];
    for (let i = 0; i < 40; i++) {
      const t = corpus.passage();
      smallTexts.push(t);
      await store.upsertDocument({ userId: 'small-user', key: `s${i}`, title: '', content: t, source: 'user' });
    }

    await store.ensureVectorIndex({ ...HNSW, buildMemoryMb: 256 }, log);
    const texts: string[] = [];
    const stages: StageResult[] = [];
    let have = 0;
    for (const size of SIZES) {
      let ingestPerSec: number | undefined;
      let ingest4PerSec: number | undefined;
      let indexBuildMs: number | undefined;
      if (have === 0) {
        // One writer (a single conversation's pace), then four (group commit across users).
        const one = await ingestViaStore(store, corpus, Math.min(2000, size), texts, 1);
        const four = await ingestViaStore(store, corpus, size - one.chunks, texts, 4);
        have = one.chunks + four.chunks;
        ingestPerSec = (one.chunks / one.ms) * 1000;
        ingest4PerSec = (four.chunks / four.ms) * 1000;
      } else {
        // Growing further: bulk load without the index, then build it (the fast path for large imports).
        let target = size;
        if (kind === 'embedded') {
          // Bound the embedded run: estimate the build from a rebuild at the current size (n log n).
          const t = await buildIndex(pool);
          const left = deadline - Date.now();
          const perChunk = (t * 1.3) / have;
          const fits = Math.floor(left / 2 / perChunk / 5000) * 5000;
          if (fits < size) {
            target = Math.max(have, fits);
            notes.push(
              `embedded: capped at ${target} chunks (a ${have}-chunk index build took ${fmt(t / 1000, 1)} s; ${size} would not fit the ${fmt(EMBEDDED_BUDGET_MS / 1000, 0)} s budget)`,
            );
          }
          if (target === have) break;
        }
        await pool.query(`drop index if exists memory.${hnswIndexName(DIM, HNSW)}`);
        const want = target - have;
        const loaded = await bulkLoad(pool, corpus, want, texts, deadline - 60_000);
        have += loaded;
        if (loaded < want) notes.push(`${kind}: stopped growing at ${have} chunks to stay inside the time budget (asked for ${size})`);
        indexBuildMs = await buildIndex(pool);
      }
      await pool.query('analyze memory.vector_embeddings');
      // A fresh store: its cache of common terms must reflect the table at this size.
      const sized = new MemoryStore(pool, { model: embedder.model, dim: DIM, embedder, ...STORE });
      const r = corpus.r;
      const queries = Array.from({ length: NQ }, () => corpus.queryFrom(texts[Math.floor(r() * texts.length)]!.split('\n\n')[0]!));
      const lat = await searchLatency(sized, queries);
      const recall = await hnswRecall(pool, queries.slice(0, 100), [40, EF_SEARCH, 200]);
      const small: number[] = [];
      for (const t of smallTexts)
        small.push((await timed(() => sized.search({ userId: 'small-user', query: corpus.queryFrom(t), limit: 10 })))[0]);
      stages.push({ db: kind, chunks: have, ingestPerSec, ingest4PerSec, indexBuildMs, lat, recall, smallUser: summarize(small) });
      print(stages.at(-1)!);
      if (Date.now() > deadline) {
        notes.push(`${kind}: time budget reached after ${have} chunks`);
        break;
      }
    }
    return { stages, fixture, notes };
  } finally {
    await pool.end();
    if (values['keep-db'] && kind === 'native') console.log(`  kept database ${db.url}`);
    else await db.close();
  }
}

function print(s: StageResult): void {
  console.log(
    `  ${s.db} @ ${s.chunks} chunks: hybrid p50 ${fmt(s.lat.hybrid.p50)} ms p99 ${fmt(s.lat.hybrid.p99)} ms; ` +
      `HNSW recall@10 ${s.recall.map((r) => `ef${r.ef}=${fmt(r.recall, 3)}`).join(' ')}` +
      (s.ingestPerSec
        ? `; ingest ${fmt(s.ingestPerSec, 0)} chunks/s (1 writer), ${fmt(s.ingest4PerSec ?? NaN, 0)} chunks/s (4 writers)`
        : '') +
      (s.indexBuildMs ? `; index build ${fmt(s.indexBuildMs / 1000, 1)} s` : ''),
  );
}

const t0 = Date.now();
console.log(`memory benchmark — ${machine()}`);
console.log(
  `embedder ${embedder.model}/${DIM}, HNSW m=${HNSW.m} ef_construction=${HNSW.efConstruction} ef_search=${EF_SEARCH} (iterative_scan=relaxed_order), ` +
    `${STORE.candidates} candidates per half, RRF k=${STORE.rrfK}, text terms in >${STORE.maxTermFreq * 100}% of chunks dropped, ${NQ} queries`,
);
const results: Array<Awaited<ReturnType<typeof runDatabase>>> = [];
const kinds = values.database === 'both' ? (['native', 'embedded'] as const) : ([values.database as 'native' | 'embedded'] as const);
for (const kind of kinds) {
  console.log(
    `\n${kind === 'native' ? `PostgreSQL server (${new URL(nativeAdminUrl()).host})` : 'embedded PGlite (pglite-server.ts over the wire protocol)'}:`,
  );
  results.push(await runDatabase(kind, kind === 'embedded' ? EMBEDDED_BUDGET_MS : 30 * 60_000));
}

console.log('\nHybrid search latency (full text + HNSW, fused by RRF; limit 10), in ms:');
console.log(
  table(
    [
      'database',
      'chunks',
      'hybrid p50',
      'hybrid p99',
      'text p50',
      'vector p50',
      'small user p50',
      'ingest/s 1 writer',
      'ingest/s 4 writers',
      'index build s',
    ],
    results.flatMap((r) =>
      r.stages.map((s) => [
        s.db,
        s.chunks,
        fmt(s.lat.hybrid.p50),
        fmt(s.lat.hybrid.p99),
        fmt(s.lat.text.p50),
        fmt(s.lat.vector.p50),
        fmt(s.smallUser?.p50 ?? NaN),
        s.ingestPerSec ? fmt(s.ingestPerSec, 0) : '',
        s.ingest4PerSec ? fmt(s.ingest4PerSec, 0) : '',
        s.indexBuildMs ? fmt(s.indexBuildMs / 1000, 1) : '',
      ]),
    ),
  ),
);
console.log('\nHNSW recall@10 against exact search (100 queries), vector half alone:');
console.log(
  table(
    ['database', 'chunks', 'ef_search', 'recall@10', 'p50 ms', 'p99 ms'],
    results.flatMap((r) => r.stages.flatMap((s) => s.recall.map((x) => [s.db, s.chunks, x.ef, fmt(x.recall, 3), fmt(x.p50), fmt(x.p99)]))),
  ),
);
console.log('\nRecall on the labelled set (test/fixtures/recall):');
results.forEach((r, i) => console.log(`  ${kinds[i]}: ${r.fixture}`));
for (const n of results.flatMap((r) => r.notes)) console.log(`note: ${n}`);
console.log(`\ntotal ${fmt((Date.now() - t0) / 1000, 0)} s`);
