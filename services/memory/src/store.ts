// SQL for conversations, history, documents and hybrid recall. Every query that
// reads or writes user data is scoped by user_id.
import { createHash } from 'node:crypto';
import type { Logger } from '@talon/kit/log';
import type { Pool, PoolClient } from '@talon/kit/db';
import type { ConversationRef } from '@talon/proto';
import type { Embedder } from '@talon/embed';
import { chunkText, type ChunkOptions } from './chunk.ts';
import { conversationTitle, encodeConversationCursor, survivesErasure, type ConversationCursor } from './conversations.ts';
import {
  assertDim,
  COMMON_LEXEMES_SQL,
  createHnswIndexSql,
  fuseRrf,
  hnswIndexName,
  QUERY_LEXEMES_SQL,
  textHalfSql,
  vectorHalfSql,
  vectorLiteral,
  type HalfRow,
  type HnswParams,
} from './sql.ts';
import type { Role, Source } from './validate.ts';

export interface StoredTurn {
  id: string;
  role: string;
  content: string;
  source: string;
  createdAtMs: number;
}

export interface StoreOptions {
  /** The configured embedding model and dimension (stored with every vector). */
  model: string;
  dim: number;
  /** Set when memory computes this model itself (the local embedder); undefined for remote models. */
  embedder: Embedder | undefined;
  chunk: ChunkOptions;
  /** Candidates per half of the hybrid search, and the RRF constant. */
  candidates: number;
  rrfK: number;
  /** Query terms in more than this fraction of rows are left out of the text half (default 1: none). */
  maxTermFreq?: number;
  /** Most query terms the text half uses (default 32). */
  maxTerms?: number;
}

export interface SearchInput {
  userId: string;
  query: string;
  limit: number;
  /** Query embedding of the configured model; computed locally when absent and possible. */
  vector?: ArrayLike<number>;
  exclude?: { channel: string; threadId: string };
  sources?: readonly string[];
  /** Cosine floor for vector candidates (0: none). */
  minSimilarity?: number;
}

export interface Hit {
  chunkId: string;
  kind: 'turn' | 'document';
  source: string;
  content: string;
  score: number;
  textRank: number;
  vectorRank: number;
  similarity: number;
  documentKey: string;
  title: string;
  channel: string;
  threadId: string;
  createdAtMs: number;
}

export interface DocumentInput {
  userId: string;
  key: string;
  title: string;
  content: string;
  source: Source;
  origin?: ConversationRef;
}

interface ChunkRow {
  userId: string;
  documentId?: string;
  historyId?: string;
  conversationId?: string;
  source: string;
  seq: number;
  content: string;
  vector?: Float32Array;
}

export interface ConversationSummaryRow {
  channel: string;
  threadId: string;
  title: string;
  createdAtMs: number;
  lastActivityMs: number;
  /** User and assistant turns. */
  turns: number;
}

export interface MessagesPage {
  /** Oldest first. */
  messages: StoredTurn[];
  /** Cursor of older messages; '' when there are none. */
  nextBefore: string;
}

export interface ConversationDeleted {
  turns: number;
  chunks: number;
  documents: number;
}

export interface TurnToStore {
  id: string;
  role: Role;
  source: Source;
  content: string;
  createdAtMs?: number;
}

interface PreparedTurns {
  turns: readonly TurnToStore[];
  inline: boolean;
  /** Chunks per turn (none when indexing is deferred) and their local vectors, flattened. */
  chunks: string[][];
  vectors: Float32Array[] | undefined;
}

/** The roles of a turn's history: the conversation itself (tool records and system rows left out). */
export const HISTORY_ROLES: readonly string[] = ['user', 'assistant'];

/** Turns of an append that all fell under an erasure: the transaction is rolled back. */
class AllErased extends Error {}

/**
 * Advisory lock key of a user's memory: appends hold it shared, DeleteUserMemory
 * exclusively, so no append can slip a new conversation past a user's erasure.
 */
const USER_LOCK_KEY = `hashtextextended('talon.memory.user:' || $1::text, 0)`;

/** The conversation row, created or its last activity moved on; holds the user's lock shared (see USER_LOCK_KEY). */
const UPSERT_CONVERSATION_SQL = `with lock as (select pg_advisory_xact_lock_shared(${USER_LOCK_KEY}))
  insert into memory.conversations (user_id, channel, thread_id, last_turn_at)
  select $1, $2, $3, coalesce(to_timestamp($4::double precision / 1000), now()) from lock
  on conflict (user_id, channel, thread_id)
    do update set last_turn_at = greatest(memory.conversations.last_turn_at, excluded.last_turn_at)
  returning id`;

/**
 * Turns of one conversation ($1), in the order given (their ids order the history; a
 * turn id stored already is skipped), and the latest erasure covering the conversation
 * ($9, $10) or the user's whole memory: one row per inserted turn, or one row with no
 * turn, each with the erasure time.
 */
const INSERT_TURNS_SQL = `with erased as (
    select (extract(epoch from max(erased_at)) * 1000)::float8 as ms from memory.erasures
     where user_id = $2 and ((channel = $9 and thread_id = $10) or (channel = '' and thread_id = ''))),
  ins as (
    insert into memory.conversation_history (conversation_id, user_id, turn_id, role, source, content, created_at, indexed_at)
    select $1::uuid, $2, t.turn_id, t.role, t.source, t.content, coalesce(to_timestamp(t.ms / 1000), now()), case when $8::boolean then now() end
      from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::float8[]) with ordinality as t(turn_id, role, source, content, ms, n)
     order by t.n
    on conflict (conversation_id, turn_id) do nothing
    returning id::text as id, turn_id)
  select erased.ms as erased_ms, ins.id, ins.turn_id from erased left join ins on true`;

/** Chunk rows as parameters $first..$first+9: eight column arrays (chunkColumns), then the model and the dimension of the vectors. */
function chunkRowsSql(first: number): string {
  const p = (k: number) => `$${first + k}`;
  return `insert into memory.vector_embeddings
    (user_id, document_id, history_id, conversation_id, source, seq, content, embedding, embedding_model, embedding_dim, embedded_at)
  select c.user_id, c.document_id, c.history_id, c.conversation_id, c.source, c.seq, c.content, c.emb::vector,
         case when c.emb is null then null else ${p(8)} end, case when c.emb is null then null else ${p(9)}::int end,
         case when c.emb is null then null else now() end
    from unnest(${p(0)}::text[], ${p(1)}::uuid[], ${p(2)}::bigint[], ${p(3)}::uuid[], ${p(4)}::text[], ${p(5)}::int[], ${p(6)}::text[], ${p(7)}::text[])
         as c(user_id, document_id, history_id, conversation_id, source, seq, content, emb)`;
}

const INSERT_CHUNKS_SQL = chunkRowsSql(1);

/**
 * One indexing batch in one statement (its own transaction): locks the turns ($1)
 * still unindexed that no other pass holds, marks them indexed and inserts their
 * chunks (of every turn of $1; only those of the locked turns are kept).
 */
const INDEX_TURNS_SQL = `with mine as (
    select id from memory.conversation_history where id = any($1::bigint[]) and indexed_at is null for update skip locked),
  marked as (
    update memory.conversation_history h set indexed_at = now() from mine where h.id = mine.id returning h.id),
  chunks as (
    ${chunkRowsSql(2)}
     where c.history_id in (select id from marked)
    returning 1)
  select (select count(*) from marked)::int as indexed, (select count(*) from chunks)::int as chunks`;

/** The column arrays of chunk rows, in the order chunkRowsSql takes them. */
function chunkColumns(rows: readonly ChunkRow[]): unknown[][] {
  return [
    rows.map((r) => r.userId),
    rows.map((r) => r.documentId ?? null),
    rows.map((r) => r.historyId ?? null),
    rows.map((r) => r.conversationId ?? null),
    rows.map((r) => r.source),
    rows.map((r) => r.seq),
    rows.map((r) => r.content),
    rows.map((r) => (r.vector ? vectorLiteral(r.vector) : null)),
  ];
}

/** Roles whose turns become searchable memory. */
export const INDEXED_ROLES: ReadonlySet<string> = new Set(['user', 'assistant']);

/**
 * Per-session settings for vector search, applied to every new pooled connection
 * before the pool hands it out (kit createPool's onConnect).
 */
export function searchSessionSetup(opts: { efSearch: number }, log?: Logger): (client: PoolClient) => Promise<void> {
  let warned = false;
  return async (client: PoolClient): Promise<void> => {
    try {
      // pgvector >= 0.8: keep scanning the HNSW graph until enough rows pass the user filter.
      await client.query(`set hnsw.ef_search = ${Math.trunc(opts.efSearch)}; set hnsw.iterative_scan = relaxed_order`);
    } catch (err) {
      if (!warned) log?.warn({ err: (err as Error).message }, 'could not apply HNSW session settings (pgvector older than 0.8?)');
      warned = true;
    }
  };
}

/** The same settings for a pool created elsewhere (tests, benchmarks). */
export function configureSearchSessions(pool: Pool, opts: { efSearch: number }, log?: Logger): void {
  (pool as unknown as { options: { onConnect?: (c: PoolClient) => Promise<void> } }).options.onConnect = searchSessionSetup(opts, log);
}

function sha256(...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\u0000');
  return h.digest('hex');
}

/** A named statement: the pg driver sends it with its text once. */
interface NamedQuery {
  name: string;
  text: string;
  values: unknown[];
}

const statementNames = new Map<string, string>();

/**
 * A statement of the serving path as a named (prepared) statement: each pooled
 * connection parses it once and PostgreSQL may reuse its plan, where an unnamed one
 * is parsed and planned on every call (most of a short statement's time on the
 * embedded database). Only for SQL whose result does not depend on the plan: the
 * vector half stays unnamed, so its choice between the HNSW index and an exact
 * scan is made for each search's own user and vector.
 */
function named(text: string, values: unknown[]): NamedQuery {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `memory_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return { name, text, values };
}

async function inTransaction<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (err) {
    await client.query('rollback').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export class MemoryStore {
  private readonly pool: Pool;
  readonly opts: StoreOptions;
  private analyzedAt = 0;
  /** Chunks this replica inserted since its last ANALYZE (spares analyzeIfGrown its query until they could matter). */
  private grown = 0;
  private common: { at: number; map: Map<string, number> } | undefined;

  constructor(pool: Pool, opts: StoreOptions) {
    this.pool = pool;
    assertDim(opts.dim);
    if (opts.embedder && (opts.embedder.model !== opts.model || opts.embedder.dim !== opts.dim)) {
      throw new Error(
        `local embedder is ${opts.embedder.model}/${opts.embedder.dim} but the store is configured for ${opts.model}/${opts.dim}`,
      );
    }
    this.opts = opts;
  }

  get model(): string {
    return this.opts.model;
  }
  get dim(): number {
    return this.opts.dim;
  }

  private async embedLocal(texts: readonly string[]): Promise<Float32Array[] | undefined> {
    if (!this.opts.embedder || texts.length === 0) return undefined;
    return this.opts.embedder.embed(texts);
  }

  /** Inserts chunk rows (embedding columns set when a vector is given) in one named statement. */
  private async insertChunks(client: Pick<PoolClient, 'query'>, rows: readonly ChunkRow[]): Promise<void> {
    if (rows.length === 0) return;
    await client.query(named(INSERT_CHUNKS_SQL, [...chunkColumns(rows), this.opts.model, this.opts.dim]));
    this.grown += rows.length;
  }

  /**
   * Stores turns. `index: 'inline'` also chunks and embeds them in the same
   * transaction; `'deferred'` leaves them for indexPendingHistory (the serving path:
   * the turn is durable at once and becomes searchable moments later, off the
   * latency of the chat turn).
   */
  async appendTurns(
    conv: ConversationRef,
    turns: readonly TurnToStore[],
    opts: { index?: 'inline' | 'deferred' } = {},
  ): Promise<{ conversationId: string; inserted: number }> {
    const prepared = await this.prepareTurns(turns, opts.index !== 'deferred');
    return inTransaction(this.pool, (client) => this.insertTurns(client, conv, prepared)).catch((err: unknown) => {
      if (err instanceof AllErased) return { conversationId: '', inserted: 0 };
      throw err;
    });
  }

  /**
   * The start of a chat turn, in one transaction: stores the user's new turn (as
   * appendTurns: idempotent by turn id, nothing stored under an erasure) and reads
   * the conversation's last `historyLimit` user and assistant turns before it —
   * never the turn itself nor anything stored after it, so a redelivered turn
   * (its user turn stored by an earlier attempt) reads the same history.
   */
  async beginTurn(
    conv: ConversationRef,
    userTurn: TurnToStore | undefined,
    historyLimit: number,
    opts: { index?: 'inline' | 'deferred' } = {},
  ): Promise<{ inserted: number; history: StoredTurn[] }> {
    if (!userTurn) {
      return { inserted: 0, history: historyLimit > 0 ? await this.history(conv, historyLimit, HISTORY_ROLES) : [] };
    }
    const prepared = await this.prepareTurns([userTurn], opts.index !== 'deferred');
    // The history is read on its own connection meanwhile: it leaves out the user turn
    // (and, on a redelivery, everything stored after it), so it reads the same rows either way.
    const [inserted, history] = await Promise.all([
      inTransaction(this.pool, async (client) => (await this.insertTurns(client, conv, prepared)).inserted).catch((err: unknown) => {
        // Erased meanwhile: leave no trace (as appendTurns), still answer with the history.
        if (err instanceof AllErased) return 0;
        throw err;
      }),
      historyLimit > 0 ? this.historyBefore(this.pool, conv, historyLimit, HISTORY_ROLES, userTurn.id) : Promise.resolve([]),
    ]);
    return { inserted, history };
  }

  /** Chunks and embeds (when indexing inline) before the transaction, so it stays short. */
  private async prepareTurns(turns: readonly TurnToStore[], inline: boolean): Promise<PreparedTurns> {
    const chunks = turns.map((t) => (inline && INDEXED_ROLES.has(t.role) ? chunkText(t.content, this.opts.chunk) : []));
    const vectors = await this.embedLocal(chunks.flat());
    return { turns, inline, chunks, vectors };
  }

  /** Stores prepared turns inside a transaction; throws AllErased when every one fell under an erasure. */
  private async insertTurns(
    client: PoolClient,
    conv: ConversationRef,
    { turns, inline, chunks, vectors }: PreparedTurns,
  ): Promise<{ conversationId: string; inserted: number }> {
    // The conversation's last activity: the newest turn's time (now when a turn has none).
    const latestMs = turns.every((t) => t.createdAtMs) ? Math.max(...turns.map((t) => t.createdAtMs!)) : null;
    // Upserting the row locks the conversation: a DeleteConversation under way
    // finishes first (and this then creates it anew), or waits for this to commit.
    const { rows } = await client.query<{ id: string }>(
      named(UPSERT_CONVERSATION_SQL, [conv.userId, conv.channel, conv.threadId, latestMs]),
    );
    const conversationId = rows[0]!.id;
    // A later statement than the upsert, so it sees an erasure committed while the upsert
    // waited; the turns go in with it and those the erasure keeps out are taken out again.
    const ins = await client.query<{ erased_ms: number | null; id: string | null; turn_id: string | null }>(
      named(INSERT_TURNS_SQL, [
        conversationId,
        conv.userId,
        turns.map((t) => t.id),
        turns.map((t) => t.role),
        turns.map((t) => t.source),
        turns.map((t) => t.content),
        turns.map((t) => t.createdAtMs || null),
        inline,
        conv.channel,
        conv.threadId,
      ]),
    );
    const erasedMs = ins.rows[0]?.erased_ms ?? undefined;
    const keep = turns.map((t) => survivesErasure(t.createdAtMs, erasedMs === undefined ? undefined : Number(erasedMs)));
    // Nothing left to store: leave no trace (not even an empty conversation).
    if (!keep.includes(true)) throw new AllErased();
    const ids = new Map(ins.rows.flatMap((r): Array<[string, string]> => (r.id !== null && r.turn_id !== null ? [[r.turn_id, r.id]] : [])));
    // The row of a turn id is the first turn that carries it.
    const first = new Map<string, number>();
    turns.forEach((t, i) => first.has(t.id) || first.set(t.id, i));
    const dropped = [...ids].filter(([turnId]) => !keep[first.get(turnId)!]);
    if (dropped.length > 0) {
      await client.query(
        named('delete from memory.conversation_history where id = any($1::bigint[]) and user_id = $2', [
          dropped.map(([, id]) => id),
          conv.userId,
        ]),
      );
      for (const [turnId] of dropped) ids.delete(turnId);
    }
    const inserted = ids.size;
    let v = 0;
    const chunkRows: ChunkRow[] = [];
    for (const [i, t] of turns.entries()) {
      const turnChunks = chunks[i]!;
      const historyId = first.get(t.id) === i ? ids.get(t.id) : undefined;
      if (historyId !== undefined) {
        turnChunks.forEach((content, seq) =>
          chunkRows.push({
            userId: conv.userId,
            historyId,
            conversationId,
            source: t.source,
            seq,
            content,
            ...(vectors ? { vector: vectors[v + seq]! } : {}),
          }),
        );
      }
      v += turnChunks.length;
    }
    await this.insertChunks(client, chunkRows);
    return { conversationId, inserted };
  }

  async history(conv: ConversationRef, limit: number, roles: readonly string[] = []): Promise<StoredTurn[]> {
    return this.historyBefore(this.pool, conv, limit, roles, undefined);
  }

  /**
   * The last `limit` turns of the conversation (oldest first) of `roles` (empty:
   * all); with `beforeTurnId`, only those stored before that turn (none of them
   * when it is absent: then the most recent).
   */
  private async historyBefore(
    client: Pick<PoolClient, 'query'>,
    conv: ConversationRef,
    limit: number,
    roles: readonly string[],
    beforeTurnId: string | undefined,
  ): Promise<StoredTurn[]> {
    // The conversation's newest turns read backwards from the end of its index, or from
    // just before the turn $6 when it is stored ($6 null: the most recent ones).
    const { rows } = await client.query<{ turn_id: string; role: string; content: string; source: string; ms: string }>(
      named(
        `select h.turn_id, h.role, h.content, h.source, (extract(epoch from h.created_at) * 1000)::bigint as ms
           from memory.conversations c
           cross join lateral (
             select h.id, h.turn_id, h.role, h.content, h.source, h.created_at from memory.conversation_history h
              where h.conversation_id = c.id and h.user_id = $1
                and (cardinality($5::text[]) = 0 or h.role = any($5::text[]))
                and h.id < coalesce((select u.id from memory.conversation_history u where u.conversation_id = c.id and u.turn_id = $6::text),
                                    9223372036854775807)
              order by h.id desc
              limit $4) h
          where c.user_id = $1 and c.channel = $2 and c.thread_id = $3
          order by h.id desc`,
        [conv.userId, conv.channel, conv.threadId, limit, [...roles], beforeTurnId ?? null],
      ),
    );
    return rows.reverse().map((r) => ({ id: r.turn_id, role: r.role, content: r.content, source: r.source, createdAtMs: Number(r.ms) }));
  }

  /** The user's conversations, most recent activity first, after the cursor. */
  async listConversations(
    userId: string,
    opts: { limit: number; before?: ConversationCursor | undefined; channel?: string | undefined },
  ): Promise<{ conversations: ConversationSummaryRow[]; next: string }> {
    const { rows } = await this.pool.query<{
      id: string;
      channel: string;
      thread_id: string;
      created_ms: number;
      last_ms: number;
      cursor_at: string;
      turns: number;
      first_user: string | null;
    }>(
      `select c.id::text as id, c.channel, c.thread_id,
              (extract(epoch from c.created_at) * 1000)::float8 as created_ms,
              (extract(epoch from c.last_turn_at) * 1000)::float8 as last_ms,
              to_char(c.last_turn_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at,
              (select count(*) from memory.conversation_history h
                where h.conversation_id = c.id and h.user_id = $1 and h.role in ('user', 'assistant'))::int as turns,
              (select left(h.content, 400) from memory.conversation_history h
                where h.conversation_id = c.id and h.user_id = $1 and h.role = 'user' order by h.id limit 1) as first_user
         from memory.conversations c
        where c.user_id = $1
          and ($3::text is null or c.channel = $3)
          and ($4::timestamptz is null or (c.last_turn_at, c.id) < ($4::timestamptz, $5::uuid))
        order by c.last_turn_at desc, c.id desc
        limit $2`,
      [userId, opts.limit + 1, opts.channel || null, opts.before?.at ?? null, opts.before?.id ?? null],
    );
    const page = rows.slice(0, opts.limit);
    const last = page.at(-1);
    return {
      conversations: page.map((r) => ({
        channel: r.channel,
        threadId: r.thread_id,
        title: conversationTitle(r.first_user),
        createdAtMs: Math.round(Number(r.created_ms)),
        lastActivityMs: Math.round(Number(r.last_ms)),
        turns: r.turns,
      })),
      next: rows.length > opts.limit && last ? encodeConversationCursor({ at: last.cursor_at, id: last.id }) : '',
    };
  }

  /**
   * A page of a conversation's user and assistant turns (oldest first), the newest
   * before the cursor, within `maxBytes` of text (at least one turn); undefined when
   * the user has no such conversation.
   */
  async conversationMessages(
    conv: ConversationRef,
    opts: { limit: number; before?: string | undefined; maxBytes: number },
  ): Promise<MessagesPage | undefined> {
    // Sizes come from octet_length (no detoasting); only the turns of the page carry their text out.
    const { rows } = await this.pool.query<{
      hid: string | null;
      turn_id: string;
      role: string;
      source: string;
      ms: string;
      content: string | null;
    }>(
      `select w.hid, w.turn_id, w.role, w.source, w.ms,
              case when w.n <= $4 and (w.n = 1 or w.running <= $6) then w.content end as content
         from memory.conversations c
         left join lateral (
           select h.id::text as hid, h.turn_id, h.role, h.source, h.content,
                  (extract(epoch from h.created_at) * 1000)::bigint as ms,
                  row_number() over (order by h.id desc) as n,
                  sum(octet_length(h.content)) over (order by h.id desc rows unbounded preceding) as running
             from memory.conversation_history h
            where h.conversation_id = c.id and h.user_id = $1 and h.role in ('user', 'assistant')
              and ($5::bigint is null or h.id < $5::bigint)
            order by h.id desc
            limit $4 + 1) w on true
        where c.user_id = $1 and c.channel = $2 and c.thread_id = $3
        order by w.n`,
      [conv.userId, conv.channel, conv.threadId, opts.limit, opts.before ?? null, opts.maxBytes],
    );
    if (rows.length === 0) return undefined;
    const page = rows.filter((r) => r.hid !== null && r.content !== null);
    const more = rows.some((r) => r.hid !== null && r.content === null);
    return {
      messages: page
        .reverse()
        .map((r) => ({ id: r.turn_id, role: r.role, content: r.content!, source: r.source, createdAtMs: Number(r.ms) })),
      nextBefore: more && page.length > 0 ? page[0]!.hid! : '',
    };
  }

  /**
   * Deletes one conversation of the user in one transaction — its turns of every
   * role, their chunks and embeddings (pending indexing and embedding work with
   * them), the documents saved from it — and records the erasure so late turns
   * created before it stay out. Undefined when the user has no such conversation.
   */
  async deleteConversation(conv: ConversationRef): Promise<ConversationDeleted | undefined> {
    return inTransaction(this.pool, async (client) => {
      // Locking the row holds off appends to this conversation until commit (their
      // upsert needs the same lock). NO KEY UPDATE, not UPDATE: an indexing pass
      // holding some of these turns inserts chunks whose foreign key takes KEY SHARE
      // on this row; FOR UPDATE would make it wait for us while we wait for it below.
      const found = await client.query<{ id: string }>(
        `select id from memory.conversations where user_id = $1 and channel = $2 and thread_id = $3 for no key update`,
        [conv.userId, conv.channel, conv.threadId],
      );
      const id = found.rows[0]?.id;
      if (id === undefined) return undefined;
      // Waits for an indexing pass holding some of these turns, so the chunks it
      // committed are seen (and deleted) below; later passes skip them.
      await client.query(`select id from memory.conversation_history where conversation_id = $1 and user_id = $2 for update`, [
        id,
        conv.userId,
      ]);
      const out = await this.deleteRows(client, conv.userId, id);
      await client.query(`delete from memory.conversations where id = $1 and user_id = $2`, [id, conv.userId]);
      await client.query(
        `insert into memory.erasures (user_id, channel, thread_id, erased_at) values ($1, $2, $3, now())
         on conflict (user_id, channel, thread_id) do update set erased_at = excluded.erased_at`,
        [conv.userId, conv.channel, conv.threadId],
      );
      return out;
    });
  }

  /** Deletes every conversation and memory document of the user, the same way. */
  async deleteUserMemory(userId: string): Promise<ConversationDeleted & { conversations: number }> {
    return inTransaction(this.pool, async (client) => {
      // Waits for appends under way and keeps new ones out until the erasure is committed.
      await client.query(`select pg_advisory_xact_lock(${USER_LOCK_KEY})`, [userId]);
      await client.query(`select id from memory.conversation_history where user_id = $1 for update`, [userId]);
      const out = await this.deleteRows(client, userId, undefined);
      const convs = await client.query(`delete from memory.conversations where user_id = $1`, [userId]);
      // The user-wide erasure covers the per-conversation ones.
      await client.query(`delete from memory.erasures where user_id = $1`, [userId]);
      await client.query(`insert into memory.erasures (user_id, channel, thread_id, erased_at) values ($1, '', '', now())`, [userId]);
      return { ...out, conversations: convs.rowCount ?? 0 };
    });
  }

  /** Chunks, documents and turns of one conversation (or all of the user's), counted. */
  private async deleteRows(client: PoolClient, userId: string, conversationId: string | undefined): Promise<ConversationDeleted> {
    const all = conversationId === undefined;
    const args = all ? [userId] : [userId, conversationId];
    const docs = await client.query<{ id: string }>(
      `select id::text as id from memory.documents where user_id = $1 and ${all ? 'true' : 'origin_conversation_id = $2'} for update`,
      args,
    );
    const docIds = docs.rows.map((d) => d.id);
    // Chunks before their documents and turns, so the cascades find nothing left and the count is complete.
    const chunks = await client.query(
      `delete from memory.vector_embeddings
        where user_id = $1 and (${all ? 'true' : 'conversation_id = $2'} or document_id = any($${args.length + 1}::uuid[]))`,
      [...args, docIds],
    );
    await client.query(`delete from memory.documents where user_id = $1 and id = any($2::uuid[])`, [userId, docIds]);
    const turns = await client.query(
      `delete from memory.conversation_history where user_id = $1 and ${all ? 'true' : 'conversation_id = $2'}`,
      args,
    );
    return { turns: turns.rowCount ?? 0, chunks: chunks.rowCount ?? 0, documents: docIds.length };
  }

  /** Forgets erasures older than `olderThanMs` (nothing under way can be that late). */
  async pruneErasures(olderThanMs: number): Promise<number> {
    const r = await this.pool.query(`delete from memory.erasures where erased_at < now() - make_interval(secs => $1::float8 / 1000)`, [
      olderThanMs,
    ]);
    return r.rowCount ?? 0;
  }

  async upsertDocument(doc: DocumentInput): Promise<{ documentId: string; chunks: number; changed: boolean }> {
    const digest = sha256(doc.title, doc.source, doc.content);
    const existing = await this.pool.query<{ id: string; content_sha256: string; n: number }>(
      `select d.id, d.content_sha256, (select count(*)::int from memory.vector_embeddings e where e.document_id = d.id and e.user_id = $1) as n
         from memory.documents d where d.user_id = $1 and d.doc_key = $2`,
      [doc.userId, doc.key],
    );
    const prev = existing.rows[0];
    if (prev && prev.content_sha256 === digest) return { documentId: prev.id, chunks: prev.n, changed: false };
    const pieces = chunkText(doc.content, this.opts.chunk);
    const vectors = await this.embedLocal(pieces);
    // One statement (its own transaction, one round trip): upsert the document,
    // replace its chunks. The delete sees only the chunks that existed before.
    const { rows } = await this.pool.query<{ id: string }>(
      `with origin as (select id from memory.conversations where user_id = $1 and channel = $7 and thread_id = $8),
       doc as (
         insert into memory.documents (user_id, doc_key, title, source, origin_conversation_id, content_sha256, content_chars)
         values ($1, $2, $3, $4, (select id from origin), $5, $6)
         on conflict (user_id, doc_key) do update set title = excluded.title, source = excluded.source,
           origin_conversation_id = excluded.origin_conversation_id, content_sha256 = excluded.content_sha256,
           content_chars = excluded.content_chars, updated_at = now()
         returning id),
       del as (delete from memory.vector_embeddings e using doc where e.document_id = doc.id and e.user_id = $1),
       ins as (
         insert into memory.vector_embeddings (user_id, document_id, source, seq, content, embedding, embedding_model, embedding_dim, embedded_at)
         select $1, doc.id, $4, (c.n - 1)::int, c.content, c.emb::vector,
                case when c.emb is null then null else $11 end, case when c.emb is null then null else $12::int end,
                case when c.emb is null then null else now() end
           from doc, unnest($9::text[], $10::text[]) with ordinality as c(content, emb, n))
       select id from doc`,
      [
        doc.userId,
        doc.key,
        doc.title,
        doc.source,
        digest,
        doc.content.length,
        doc.origin?.channel ?? null,
        doc.origin?.threadId ?? null,
        pieces,
        pieces.map((_, i) => (vectors ? vectorLiteral(vectors[i]!) : null)),
        this.opts.model,
        this.opts.dim,
      ],
    );
    return { documentId: rows[0]!.id, chunks: pieces.length, changed: true };
  }

  async deleteDocument(userId: string, key: string): Promise<{ deleted: boolean; chunks: number }> {
    // One statement: the count sees the chunks as they were before the cascade removes them.
    const { rows } = await this.pool.query<{ deleted: number; chunks: number }>(
      `with d as (delete from memory.documents where user_id = $1 and doc_key = $2 returning id)
       select (select count(*) from d)::int as deleted,
              (select count(*) from memory.vector_embeddings e where e.user_id = $1 and e.document_id in (select id from d))::int as chunks`,
      [userId, key],
    );
    return { deleted: (rows[0]?.deleted ?? 0) > 0, chunks: rows[0]?.chunks ?? 0 };
  }

  /** Common lexemes and their row fractions (from ANALYZE), refreshed every few minutes. */
  private async commonLexemes(): Promise<Map<string, number>> {
    const now = Date.now();
    if (this.common && now - this.common.at < 300_000) return this.common.map;
    const { rows } = await this.pool.query<{ elem: string; freq: number }>(COMMON_LEXEMES_SQL);
    const map = new Map(rows.map((r) => [r.elem, Number(r.freq)]));
    this.common = { at: now, map };
    return map;
  }

  /**
   * The text half's terms: the query's lexemes without those found in more than
   * maxTermFreq of all rows (they barely rank and would make the OR query rank
   * most of the table), at most maxTerms, rarest first.
   */
  async queryTerms(query: string): Promise<string[]> {
    if (query.trim() === '') return [];
    const [lex, common] = await Promise.all([this.pool.query<{ l: string }>(QUERY_LEXEMES_SQL, [query]), this.commonLexemes()]);
    const max = this.opts.maxTermFreq ?? 1;
    return lex.rows
      .map((r) => ({ l: r.l, f: common.get(r.l) ?? 0 }))
      .filter((t) => t.f <= max)
      .sort((a, b) => a.f - b.f || (a.l < b.l ? -1 : 1))
      .slice(0, this.opts.maxTerms ?? 32)
      .map((t) => t.l);
  }

  /**
   * Hybrid search: the full-text and vector halves run concurrently (on two
   * pooled connections) and are fused by reciprocal rank. `{ vector: false }`
   * runs the text half only (evaluation and diagnostics).
   */
  async search(input: SearchInput, halves: { vector: boolean } = { vector: true }): Promise<{ hits: Hit[]; vectorUsed: boolean }> {
    let vector = halves.vector ? input.vector : undefined;
    if (halves.vector && !vector && this.opts.embedder && input.query.trim() !== '')
      vector = (await this.opts.embedder.embed([input.query]))[0];
    const candidates = Math.max(this.opts.candidates, input.limit);
    const base = {
      userId: input.userId,
      candidates,
      ...(input.exclude ? { exclude: input.exclude } : {}),
      ...(input.sources && input.sources.length > 0 ? { sources: input.sources } : {}),
    };
    const ms = input.minSimilarity ?? 0;
    const [text, vec] = await Promise.all([
      (async () => {
        if (input.query.trim() === '') return [];
        const q = textHalfSql({
          ...base,
          query: input.query,
          common: await this.commonLexemes(),
          maxTermFreq: this.opts.maxTermFreq ?? 1,
          maxTerms: this.opts.maxTerms ?? 32,
        });
        return (await this.pool.query<HalfRow>(named(q.text, q.values))).rows;
      })(),
      (async () => {
        if (!vector) return [];
        const q = vectorHalfSql({
          ...base,
          vector: vectorLiteral(vector),
          model: this.opts.model,
          dim: this.opts.dim,
          // Unit vectors: |a-b|^2 = 2 - 2 cos(a, b).
          ...(ms > 0 ? { maxDistance: Math.sqrt(Math.max(0, 2 - 2 * Math.min(1, ms))) } : {}),
        });
        return (await this.pool.query<HalfRow>(q.text, q.values)).rows;
      })(),
    ]);
    const fused = fuseRrf(text, vec, this.opts.rrfK, input.limit);
    return {
      vectorUsed: vector !== undefined,
      hits: fused.map((r) => ({
        chunkId: r.id,
        kind: r.is_document ? 'document' : 'turn',
        source: r.source,
        content: r.content,
        score: r.score,
        textRank: r.textRank,
        vectorRank: r.vectorRank,
        similarity: r.distance === undefined ? 0 : 1 - (Number(r.distance) * Number(r.distance)) / 2,
        documentKey: r.doc_key ?? '',
        title: r.title ?? '',
        channel: r.channel ?? '',
        threadId: r.thread_id ?? '',
        createdAtMs: Math.round(Number(r.created_ms)),
      })),
    };
  }

  /**
   * Leases up to `limit` chunks whose embedding is missing or of another model or
   * dimension, after the cursor `after` (chunk id). Rows leased by someone else
   * are skipped until their lease expires, so workers in several replicas share
   * the work and a crashed worker's batch is retried.
   */
  async claimEmbeddingWork(after: string, limit: number, leaseMs: number): Promise<Array<{ id: string; content: string }>> {
    const { rows } = await this.pool.query<{ id: string; content: string }>(
      `with c as (
         select id from memory.vector_embeddings
          where id > $1::bigint
            and (embedding_model is distinct from $2 or embedding_dim is distinct from $3)
            and (embed_lease_until is null or embed_lease_until < now())
          order by id
          limit $4
          for update skip locked)
       update memory.vector_embeddings e set embed_lease_until = now() + make_interval(secs => $5::float8 / 1000)
         from c where e.id = c.id
       returning e.id::text as id, e.content`,
      [after === '' ? '0' : after, this.opts.model, this.opts.dim, limit, leaseMs],
    );
    return rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  }

  /** Stores vectors of the configured model for chunks; returns how many rows changed. */
  async putEmbeddings(items: ReadonlyArray<{ id: string; vector: ArrayLike<number> }>): Promise<number> {
    if (items.length === 0) return 0;
    const r = await this.pool.query(
      `update memory.vector_embeddings e
          set embedding = v.emb::vector, embedding_model = $3, embedding_dim = $4, embedded_at = now(), embed_lease_until = null
         from (select unnest($1::bigint[]) as id, unnest($2::text[]) as emb) v
        where e.id = v.id`,
      [items.map((i) => i.id), items.map((i) => vectorLiteral(i.vector)), this.opts.model, this.opts.dim],
    );
    return r.rowCount ?? 0;
  }

  /** Embeds one leased batch with the local embedder; returns the number of chunks processed (0: nothing left after `after`). */
  async reembedLocalBatch(after: string, limit: number): Promise<{ processed: number; last: string }> {
    if (!this.opts.embedder) throw new Error('reembedLocalBatch needs the local embedder');
    const work = await this.claimEmbeddingWork(after, limit, 60_000);
    if (work.length === 0) return { processed: 0, last: after };
    const vectors = await this.opts.embedder.embed(work.map((w) => w.content));
    await this.putEmbeddings(work.map((w, i) => ({ id: w.id, vector: vectors[i]! })));
    return { processed: work.length, last: work.at(-1)!.id };
  }

  /**
   * Makes history turns written before searchable memory existed (migration 2)
   * searchable: chunks them (embedding them when the embedder is local) and marks
   * them indexed, in one transaction per batch. Returns the turns indexed.
   */
  async indexPendingHistory(limit: number): Promise<number> {
    const pending = await this.pool.query<{ id: string; user_id: string; conversation_id: string; source: string; content: string }>(
      named(
        `select id::text as id, user_id, conversation_id, source, content from memory.conversation_history
          where indexed_at is null and role in ('user', 'assistant') order by id limit $1`,
        [limit],
      ),
    );
    if (pending.rows.length === 0) return 0;
    const chunks = pending.rows.map((r) => chunkText(r.content, this.opts.chunk));
    const vectors = await this.embedLocal(chunks.flat());
    const rows: ChunkRow[] = [];
    let v = 0;
    pending.rows.forEach((r, i) => {
      chunks[i]!.forEach((content, seq) =>
        rows.push({
          userId: r.user_id,
          historyId: r.id,
          conversationId: r.conversation_id,
          source: r.source,
          seq,
          content,
          ...(vectors ? { vector: vectors[v + seq]! } : {}),
        }),
      );
      v += chunks[i]!.length;
    });
    // Another replica may have indexed some of them meanwhile: the statement locks and re-checks them.
    const done = await this.pool.query<{ indexed: number; chunks: number }>(
      named(INDEX_TURNS_SQL, [pending.rows.map((r) => r.id), ...chunkColumns(rows), this.opts.model, this.opts.dim]),
    );
    this.grown += done.rows[0]?.chunks ?? 0;
    return done.rows[0]?.indexed ?? 0;
  }

  /** Whether this replica alone stored enough chunks since its last ANALYZE for analyzeIfGrown to act (no query). */
  get mayNeedAnalyze(): boolean {
    return this.grown >= Math.max(500, this.analyzedAt / 10);
  }

  /**
   * Refreshes planner and term statistics (the text half prunes common terms with
   * them) once the table has grown by a tenth since the last time. Servers run
   * autovacuum anyway; the embedded database has no autovacuum.
   */
  async analyzeIfGrown(): Promise<boolean> {
    const { rows } = await this.pool.query<{ max: string | null }>('select max(id)::text as max from memory.vector_embeddings');
    const now = Number(rows[0]?.max ?? 0);
    if (now - this.analyzedAt < Math.max(500, this.analyzedAt / 10)) return false;
    // The history tables too: the embedded database's planner has no other statistics.
    await this.pool.query('analyze memory.vector_embeddings, memory.conversation_history, memory.conversations');
    this.analyzedAt = now;
    this.grown = 0;
    this.common = undefined;
    return true;
  }

  async embeddingStatus(hnsw: HnswParams): Promise<{ chunks: number; current: number; indexReady: boolean }> {
    const { rows } = await this.pool.query<{ chunks: number; current: number }>(
      `select count(*)::int as chunks, (count(*) filter (where embedding_model = $1 and embedding_dim = $2))::int as current
         from memory.vector_embeddings`,
      [this.opts.model, this.opts.dim],
    );
    return { chunks: rows[0]?.chunks ?? 0, current: rows[0]?.current ?? 0, indexReady: (await this.indexState(hnsw)) === 'valid' };
  }

  private async indexState(hnsw: HnswParams, client: Pick<PoolClient, 'query'> = this.pool): Promise<'missing' | 'invalid' | 'valid'> {
    const { rows } = await client.query<{ valid: boolean }>(
      `select i.indisvalid as valid from pg_class c join pg_index i on i.indexrelid = c.oid
         join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'memory' and c.relname = $1`,
      [hnswIndexName(this.opts.dim, hnsw)],
    );
    if (rows.length === 0) return 'missing';
    return rows[0]!.valid ? 'valid' : 'invalid';
  }

  /**
   * Builds the HNSW index for the configured dimension if it is missing (or left
   * invalid by an interrupted build), without blocking writes where the server
   * supports CREATE INDEX CONCURRENTLY, then drops vector indexes built for other
   * dimensions or parameters. One replica builds; the others return 'busy'.
   * Until the index is valid, vector search is an exact scan (correct, slower).
   */
  async ensureVectorIndex(hnsw: HnswParams & { buildMemoryMb: number }, log?: Logger): Promise<'ready' | 'built' | 'busy'> {
    const name = hnswIndexName(this.opts.dim, hnsw);
    const client = await this.pool.connect();
    const lock = 0x7a10_4d01;
    try {
      const got = await client.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [lock]);
      if (!got.rows[0]?.ok) return 'busy';
      try {
        let state = await this.indexState(hnsw, client);
        let built = false;
        if (state === 'invalid') {
          log?.warn({ index: name }, 'dropping an invalid vector index left by an interrupted build');
          await client.query(`drop index if exists memory.${name}`);
          state = 'missing';
        }
        if (state === 'missing') {
          const t0 = Date.now();
          log?.info({ index: name, dim: this.opts.dim, m: hnsw.m, ef_construction: hnsw.efConstruction }, 'building vector index');
          await client.query(`set maintenance_work_mem = '${Math.trunc(hnsw.buildMemoryMb)}MB'`);
          try {
            await client.query(createHnswIndexSql(this.opts.dim, hnsw, true));
          } catch (err) {
            // Single-process servers (the embedded PGlite) cannot build concurrently.
            log?.info({ err: (err as Error).message }, 'concurrent index build unavailable; building in place');
            await client.query(`drop index if exists memory.${name}`);
            await client.query(createHnswIndexSql(this.opts.dim, hnsw, false));
          } finally {
            await client.query('reset maintenance_work_mem').catch(() => undefined);
          }
          built = true;
          log?.info({ index: name, ms: Date.now() - t0 }, 'vector index built');
        }
        const others = await client.query<{ relname: string }>(
          `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'memory' and c.relkind = 'i' and c.relname like 'vector\\_embeddings\\_hnsw\\_%' and c.relname <> $1`,
          [name],
        );
        for (const o of others.rows) {
          if (!/^vector_embeddings_hnsw_[a-z0-9_]+$/.test(o.relname)) continue;
          await client.query(`drop index if exists memory.${o.relname}`);
          log?.info({ index: o.relname }, 'dropped vector index of another dimension or parameters');
        }
        return built ? 'built' : 'ready';
      } finally {
        await client.query('select pg_advisory_unlock($1)', [lock]).catch(() => undefined);
      }
    } finally {
      client.release();
    }
  }
}
