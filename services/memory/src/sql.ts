// SQL text builders for the hybrid search and the vector index. Pure, so the
// exact statements are unit-tested and shared by the store and the bench.
// Values always travel as bind parameters; only integers validated at config
// load (the dimension, HNSW parameters) are written into the text, because an
// index expression and a partial-index predicate must be literal to match.
import { TEXT_SEARCH_CONFIG } from './migrations.ts';

export function assertDim(dim: number): number {
  if (!Number.isInteger(dim) || dim < 1 || dim > 16000) throw new RangeError(`embedding dimension must be an integer 1-16000, got ${dim}`);
  return dim;
}

/** pgvector text form of a vector. */
export function vectorLiteral(v: ArrayLike<number>): string {
  let s = '[';
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x)) throw new RangeError(`vector component ${i} is not a finite number`);
    s += i === 0 ? String(x) : `,${x}`;
  }
  return `${s}]`;
}

export interface HnswParams {
  m: number;
  efConstruction: number;
}

export function hnswIndexName(dim: number, p: HnswParams): string {
  return `vector_embeddings_hnsw_d${assertDim(dim)}_m${p.m}_ef${p.efConstruction}`;
}

/** The partial HNSW index over rows of one dimension (expression must match searchSql's ORDER BY). */
export function createHnswIndexSql(dim: number, p: HnswParams, concurrently: boolean): string {
  const d = assertDim(dim);
  if (!Number.isInteger(p.m) || !Number.isInteger(p.efConstruction)) throw new RangeError('HNSW parameters must be integers');
  return (
    `create index ${concurrently ? 'concurrently ' : ''}if not exists ${hnswIndexName(d, p)} on memory.vector_embeddings ` +
    `using hnsw ((embedding::vector(${d})) vector_l2_ops) with (m = ${p.m}, ef_construction = ${p.efConstruction}) ` +
    `where embedding_dim = ${d}`
  );
}

/** The query's lexemes under the text search configuration of the tsv column. */
export const QUERY_LEXEMES_SQL = `select l from unnest(tsvector_to_array(to_tsvector('${TEXT_SEARCH_CONFIG}', $1))) as l`;

/** Lexemes ANALYZE found most common in the tsv column, with the fraction of rows containing each. */
export const COMMON_LEXEMES_SQL = `select c.elem, c.freq from pg_stats s
  cross join lateral unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) as c(elem, freq)
  where s.schemaname = 'memory' and s.tablename = 'vector_embeddings' and s.attname = 'tsv' and c.elem is not null`;

export interface HalfInput {
  userId: string;
  candidates: number;
  exclude?: { channel: string; threadId: string };
  sources?: readonly string[];
}

/** Columns every half returns for its candidates, so fusion needs no further query. */
const HIT_COLUMNS = `e.id::text as id, e.source, e.content, (extract(epoch from e.created_at) * 1000)::float8 as created_ms,
       (e.document_id is not null) as is_document, d.doc_key, d.title, c.channel, c.thread_id`;

function halfFilters(i: HalfInput, $: (v: unknown) => string): { user: string; where: string } {
  const user = $(i.userId);
  const filters: string[] = [`e.user_id = ${user}`];
  if (i.exclude) {
    // True unless both sides are known and equal: documents (no conversation) and a
    // conversation that does not exist yet (its first turn) exclude nothing.
    filters.push(
      `coalesce(e.conversation_id <> (select id from memory.conversations where user_id = ${user} and channel = ${$(i.exclude.channel)} and thread_id = ${$(i.exclude.threadId)}), true)`,
    );
  }
  if (i.sources && i.sources.length > 0) filters.push(`e.source = any(${$([...i.sources])}::text[])`);
  return { user, where: filters.join(' and ') };
}

function params(): { values: unknown[]; $: (v: unknown) => string } {
  const values: unknown[] = [];
  return {
    values,
    $: (v: unknown) => {
      values.push(v);
      return `$${values.length}`;
    },
  };
}

/**
 * Full-text half: chunks of the user matching any of `terms` (lexemes, OR-ed),
 * best ts_rank first. Each lexeme becomes a tsquery through plainto_tsquery, so
 * nothing the user typed is ever parsed as tsquery syntax.
 */
export function textHalfSql(
  i: HalfInput &
    ({ terms: readonly string[] } | { query: string; common: ReadonlyMap<string, number>; maxTermFreq: number; maxTerms: number }),
): { text: string; values: unknown[] } {
  const { values, $ } = params();
  const { user, where } = halfFilters(i, $);
  // Terms given, or taken from the query inside this statement (one round trip):
  // its lexemes without those ANALYZE found in more than maxTermFreq of all rows,
  // rarest first, at most maxTerms.
  const terms =
    'terms' in i
      ? `select t from unnest(${$([...i.terms])}::text[]) as t`
      : `select l as t from unnest(tsvector_to_array(to_tsvector('${TEXT_SEARCH_CONFIG}', ${$(i.query)}))) as l
           left join unnest(${$([...i.common.keys()])}::text[], ${$([...i.common.values()])}::float8[]) as c(elem, freq) on c.elem = l
          where coalesce(c.freq, 0) <= ${$(i.maxTermFreq)}
          order by coalesce(c.freq, 0), l limit ${$(i.maxTerms)}`;
  const text = `with terms as (${terms}),
     tq as (select coalesce(string_agg('(' || plainto_tsquery('simple', t)::text || ')', ' | '), '')::tsquery as q
                   from terms where plainto_tsquery('simple', t)::text <> ''),
     f as (select e.id, ts_rank(e.tsv, tq.q) as rank from memory.vector_embeddings e, tq
            where ${where} and e.tsv @@ tq.q order by rank desc, e.id desc limit ${$(i.candidates)})
select ${HIT_COLUMNS}, f.rank::float8 as key
  from f join memory.vector_embeddings e on e.id = f.id and e.user_id = ${user}
  left join memory.documents d on d.id = e.document_id and d.user_id = ${user}
  left join memory.conversations c on c.id = e.conversation_id and c.user_id = ${user}
 order by f.rank desc, e.id desc`;
  return { text, values };
}

/**
 * Vector half: `ORDER BY embedding::vector(D) <-> q LIMIT k`, served by the
 * partial HNSW index (pgvector's iterative scan keeps filtered results complete),
 * re-ordered by exact distance because relaxed iterative scans may return
 * neighbours slightly out of order.
 */
export function vectorHalfSql(i: HalfInput & { vector: string; model: string; dim: number; maxDistance?: number }): {
  text: string;
  values: unknown[];
} {
  const { values, $ } = params();
  const d = assertDim(i.dim);
  const { user, where } = halfFilters(i, $);
  const q = `${$(i.vector)}::vector(${d})`;
  const text = `with v as materialized (
       select e.id, e.embedding::vector(${d}) <-> ${q} as dist from memory.vector_embeddings e
        where ${where} and e.embedding_dim = ${d} and e.embedding_model = ${$(i.model)}
        order by e.embedding::vector(${d}) <-> ${q} limit ${$(i.candidates)})
select ${HIT_COLUMNS}, v.dist::float8 as key
  from v join memory.vector_embeddings e on e.id = v.id and e.user_id = ${user}
  left join memory.documents d on d.id = e.document_id and d.user_id = ${user}
  left join memory.conversations c on c.id = e.conversation_id and c.user_id = ${user}
 ${i.maxDistance !== undefined ? `where v.dist <= ${$(i.maxDistance)}` : ''}
 order by v.dist, e.id`;
  return { text, values };
}

/** A candidate row of either half. */
export interface HalfRow {
  id: string;
  source: string;
  content: string;
  created_ms: number;
  is_document: boolean;
  doc_key: string | null;
  title: string | null;
  channel: string | null;
  thread_id: string | null;
  /** ts_rank (text half) or L2 distance (vector half). */
  key: number;
}

export interface FusedRow extends HalfRow {
  score: number;
  textRank: number;
  vectorRank: number;
  distance: number | undefined;
}

/**
 * Reciprocal rank fusion: score = Σ 1 / (k + rank) over the lists a row appears
 * in (ranks 1-based, lists already ordered best first); ties by newer id.
 */
export function fuseRrf(text: readonly HalfRow[], vector: readonly HalfRow[], k: number, limit: number): FusedRow[] {
  const out = new Map<string, FusedRow>();
  const take = (rows: readonly HalfRow[], which: 'text' | 'vector') => {
    rows.forEach((r, idx) => {
      const rank = idx + 1;
      let f = out.get(r.id);
      if (!f) {
        f = { ...r, score: 0, textRank: 0, vectorRank: 0, distance: undefined };
        out.set(r.id, f);
      }
      f.score += 1 / (k + rank);
      if (which === 'text') f.textRank = rank;
      else {
        f.vectorRank = rank;
        f.distance = r.key;
      }
    });
  };
  take(text, 'text');
  take(vector, 'vector');
  const idNum = (id: string) => BigInt(id);
  return [...out.values()]
    .sort((a, b) => b.score - a.score || (idNum(b.id) > idNum(a.id) ? 1 : idNum(b.id) < idNum(a.id) ? -1 : 0))
    .slice(0, limit);
}
