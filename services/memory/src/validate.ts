// Request validation for the memory API: pure, unit-tested without sockets.
import { InvalidArgument, TalonError } from '@talon/kit/errors';
import type { ConversationRef } from '@talon/proto';
import {
  CONVERSATIONS_DEFAULT_LIMIT,
  CONVERSATIONS_MAX_LIMIT,
  decodeConversationCursor,
  decodeMessagesCursor,
  MESSAGES_DEFAULT_LIMIT,
  MESSAGES_MAX_LIMIT,
  pageLimit,
} from './conversations.ts';

export const ROLES = ['system', 'user', 'assistant', 'tool'] as const;
export const SOURCES = ['system', 'user', 'assistant', 'tool', 'web'] as const;
export type Role = (typeof ROLES)[number];
export type Source = (typeof SOURCES)[number];

const ID = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,199}$/;

export function validConversation(c: ConversationRef | undefined): ConversationRef {
  if (!c) throw new InvalidArgument('conversation is required');
  for (const [k, v] of [
    ['conversation.user_id', c.userId],
    ['conversation.channel', c.channel],
    ['conversation.thread_id', c.threadId],
  ] as const) {
    if (!ID.test(v))
      throw new InvalidArgument(`${k} must be 1-200 characters of letters, digits and :@._+- (got ${JSON.stringify(v.slice(0, 40))})`);
  }
  return c;
}

export interface TurnInput {
  id: string;
  role: string;
  content: string;
  source: string;
}

export function validTurns(
  turns: readonly TurnInput[],
  maxBytes: number,
  /** How errors name the i-th turn (BeginTurn's one turn is `user_turn`). */
  field: (i: number) => string = (i) => `turns[${i}]`,
): Array<TurnInput & { role: Role; source: Source }> {
  if (turns.length === 0) throw new InvalidArgument('turns must not be empty');
  if (turns.length > 100) throw new InvalidArgument(`at most 100 turns per call (got ${turns.length})`);
  return turns.map((t, i) => {
    const f = field(i);
    if (!ID.test(t.id)) throw new InvalidArgument(`${f}.id must be 1-200 characters of letters, digits and :@._+-`);
    if (!(ROLES as readonly string[]).includes(t.role)) throw new InvalidArgument(`${f}.role must be one of ${ROLES.join(', ')}`);
    const source = t.source === '' ? (t.role === 'assistant' ? 'assistant' : t.role === 'tool' ? 'tool' : 'user') : t.source;
    if (!(SOURCES as readonly string[]).includes(source)) throw new InvalidArgument(`${f}.source must be one of ${SOURCES.join(', ')}`);
    const bytes = Buffer.byteLength(t.content, 'utf8');
    if (bytes > maxBytes) throw new InvalidArgument(`${f}.content is ${bytes} bytes; the limit is ${maxBytes}`);
    if (t.content.includes('\u0000')) throw new InvalidArgument(`${f}.content contains a NUL character`);
    return { ...t, role: t.role as Role, source: source as Source };
  });
}

export const HISTORY_MAX_LIMIT = 500;

export function clampLimit(limit: number): number {
  if (limit <= 0) return 50;
  return Math.min(limit, HISTORY_MAX_LIMIT);
}

/** Largest search query text memory accepts (the orchestrator trims longer messages). */
export const MAX_QUERY_BYTES = 8 * 1024;
export const DEFAULT_SEARCH_LIMIT = 5;

export function validUserId(v: string, field = 'user_id'): string {
  if (!ID.test(v))
    throw new InvalidArgument(`${field} must be 1-200 characters of letters, digits and :@._+- (got ${JSON.stringify(v.slice(0, 40))})`);
  return v;
}

function noNul(text: string, field: string): void {
  if (text.includes('\u0000')) throw new InvalidArgument(`${field} contains a NUL character`);
}

/** A conversation reference inside a request for `userId`: it must be that user's. */
export function validOwnConversation(c: ConversationRef | undefined, userId: string, field: string): ConversationRef | undefined {
  if (!c || (c.userId === '' && c.channel === '' && c.threadId === '')) return undefined;
  const conv = validConversation(c);
  if (conv.userId !== userId) throw new InvalidArgument(`${field}.user_id must equal user_id`);
  return conv;
}

export interface EmbeddingSetting {
  model: string;
  dim: number;
}

/** A vector sent by the caller must be of memory's configured model and dimension. */
export function validVector(
  e: { model: string; dim: number; values: number[] } | undefined,
  cfg: EmbeddingSetting,
  field: string,
): number[] | undefined {
  if (!e || e.values.length === 0) return undefined;
  if (e.model !== cfg.model || e.dim !== cfg.dim) {
    throw new InvalidArgument(
      `${field} is ${e.model || '(no model)'}/${e.dim} but memory is configured for ${cfg.model}/${cfg.dim}; set TALON_EMBEDDINGS_MODEL and TALON_EMBEDDINGS_DIM identically for memory and orchestrator`,
    );
  }
  return validValues(e.values, cfg.dim, field);
}

function validValues(values: number[], dim: number, field: string): number[] {
  if (values.length !== dim) throw new InvalidArgument(`${field} has ${values.length} values; expected ${dim}`);
  if (!values.every(Number.isFinite)) throw new InvalidArgument(`${field} contains a value that is not a finite number`);
  return values;
}

export interface SearchRequestLike {
  userId: string;
  query: string;
  limit: number;
  queryEmbedding?: { model: string; dim: number; values: number[] } | undefined;
  excludeConversation?: ConversationRef | undefined;
  sources: string[];
  minSimilarity: number;
}

export function validSearch(req: SearchRequestLike, cfg: EmbeddingSetting & { maxLimit: number }) {
  const userId = validUserId(req.userId);
  const bytes = Buffer.byteLength(req.query, 'utf8');
  if (bytes > MAX_QUERY_BYTES) throw new InvalidArgument(`query is ${bytes} bytes; the limit is ${MAX_QUERY_BYTES}`);
  noNul(req.query, 'query');
  // Any non-positive or absurd limit is brought into range rather than trusted.
  const limit = !Number.isFinite(req.limit) || req.limit <= 0 ? DEFAULT_SEARCH_LIMIT : Math.min(Math.trunc(req.limit), cfg.maxLimit);
  if (req.sources.length > SOURCES.length) throw new InvalidArgument(`at most ${SOURCES.length} sources`);
  for (const s of req.sources)
    if (!(SOURCES as readonly string[]).includes(s)) throw new InvalidArgument(`sources may contain only ${SOURCES.join(', ')}`);
  if (!Number.isFinite(req.minSimilarity) || req.minSimilarity < -1 || req.minSimilarity > 1)
    throw new InvalidArgument('min_similarity must be from -1 to 1');
  const exclude = validOwnConversation(req.excludeConversation, userId, 'exclude_conversation');
  const vector = validVector(req.queryEmbedding, cfg, 'query_embedding');
  return {
    userId,
    query: req.query,
    limit,
    sources: req.sources as Source[],
    minSimilarity: req.minSimilarity,
    ...(exclude ? { exclude: { channel: exclude.channel, threadId: exclude.threadId } } : {}),
    ...(vector ? { vector } : {}),
  };
}

export interface BeginTurnRequestLike {
  conversation?: ConversationRef | undefined;
  userTurn?: (TurnInput & { createdAtMs: number }) | undefined;
  historyLimit: number;
  recall?: SearchRequestLike | undefined;
}

/**
 * BeginTurn: each part validated as AppendTurns (user_turn), GetHistory and
 * Search (recall) validate it, before anything is stored. The recall's query
 * embedding is returned unchecked: a vector memory cannot use is a recall failure
 * (the turn goes on without recall), not a refused turn.
 */
export function validBeginTurn(req: BeginTurnRequestLike, cfg: EmbeddingSetting & { maxLimit: number; maxTurnBytes: number }) {
  const conversation = validConversation(req.conversation);
  const userTurn = req.userTurn
    ? { ...validTurns([req.userTurn], cfg.maxTurnBytes, () => 'user_turn')[0]!, createdAtMs: req.userTurn.createdAtMs }
    : undefined;
  const historyLimit = req.historyLimit <= 0 ? 0 : Math.min(req.historyLimit, HISTORY_MAX_LIMIT);
  let recall: (ReturnType<typeof validSearch> & { queryEmbedding: SearchRequestLike['queryEmbedding'] }) | undefined;
  if (req.recall) {
    const { queryEmbedding, ...rest } = req.recall;
    try {
      recall = { ...validSearch({ ...rest, queryEmbedding: undefined }, cfg), queryEmbedding };
    } catch (err) {
      if (err instanceof InvalidArgument) throw new InvalidArgument(`recall: ${err.message}`);
      throw err;
    }
    if (recall.userId !== conversation.userId) throw new InvalidArgument('recall.user_id must equal conversation.user_id');
  }
  return { conversation, historyLimit, ...(userTurn ? { userTurn } : {}), ...(recall ? { recall } : {}) };
}

export interface DocumentRequestLike {
  userId: string;
  key: string;
  title: string;
  content: string;
  source: string;
  origin?: ConversationRef | undefined;
}

export const MAX_TITLE_CHARS = 512;

export function validDocument(req: DocumentRequestLike, maxBytes: number) {
  const userId = validUserId(req.userId);
  if (!ID.test(req.key)) throw new InvalidArgument('key must be 1-200 characters of letters, digits and :@._+-');
  if (req.title.length > MAX_TITLE_CHARS) throw new InvalidArgument(`title is longer than ${MAX_TITLE_CHARS} characters`);
  const bytes = Buffer.byteLength(req.content, 'utf8');
  if (bytes > maxBytes) {
    throw new TalonError(
      'payload_too_large',
      `document is ${bytes} bytes; the limit is ${maxBytes} (MEMORY_MAX_DOCUMENT_BYTES): split it into several documents`,
    );
  }
  if (req.content.trim() === '') throw new InvalidArgument('content must not be empty');
  noNul(req.content, 'content');
  noNul(req.title, 'title');
  const source = req.source === '' ? 'user' : req.source;
  if (!(SOURCES as readonly string[]).includes(source)) throw new InvalidArgument(`source must be one of ${SOURCES.join(', ')}`);
  const origin = validOwnConversation(req.origin, userId, 'origin');
  return { userId, key: req.key, title: req.title, content: req.content, source: source as Source, ...(origin ? { origin } : {}) };
}

export function validDocumentKey(userId: string, key: string): { userId: string; key: string } {
  validUserId(userId);
  if (!ID.test(key)) throw new InvalidArgument('key must be 1-200 characters of letters, digits and :@._+-');
  return { userId, key };
}

const CHUNK_ID = /^[0-9]{1,19}$/;

function sameEmbedding(model: string, dim: number, cfg: EmbeddingSetting): void {
  if (model !== cfg.model || dim !== cfg.dim) {
    throw new InvalidArgument(
      `the caller embeds with ${model || '(no model)'}/${dim} but memory is configured for ${cfg.model}/${cfg.dim}; set TALON_EMBEDDINGS_MODEL and TALON_EMBEDDINGS_DIM identically for memory and orchestrator`,
    );
  }
}

export function validClaim(
  req: { model: string; dim: number; limit: number; leaseMs: number; afterChunkId: string },
  cfg: EmbeddingSetting,
) {
  sameEmbedding(req.model, req.dim, cfg);
  if (req.afterChunkId !== '' && !CHUNK_ID.test(req.afterChunkId)) throw new InvalidArgument('after_chunk_id must be a chunk id');
  return {
    after: req.afterChunkId,
    limit: req.limit <= 0 ? 64 : Math.min(req.limit, 1000),
    leaseMs: req.leaseMs <= 0 ? 60_000 : Math.min(Math.max(req.leaseMs, 1000), 600_000),
  };
}

export function validPut(req: { model: string; dim: number; items: Array<{ chunkId: string; values: number[] }> }, cfg: EmbeddingSetting) {
  sameEmbedding(req.model, req.dim, cfg);
  if (req.items.length > 1000) throw new InvalidArgument(`at most 1000 embeddings per call (got ${req.items.length})`);
  return req.items.map((it, i) => {
    if (!CHUNK_ID.test(it.chunkId)) throw new InvalidArgument(`items[${i}].chunk_id must be a chunk id`);
    return { id: it.chunkId, vector: validValues(it.values, cfg.dim, `items[${i}].values`) };
  });
}

export function validListConversations(req: { userId: string; limit: number; before: string; channel: string }) {
  const userId = validUserId(req.userId);
  if (req.channel !== '' && !ID.test(req.channel)) throw new InvalidArgument('channel must be a channel name such as api, web or telegram');
  return {
    userId,
    limit: pageLimit(req.limit, CONVERSATIONS_DEFAULT_LIMIT, CONVERSATIONS_MAX_LIMIT),
    before: decodeConversationCursor(req.before),
    channel: req.channel || undefined,
  };
}

export function validConversationMessages(req: { conversation?: ConversationRef | undefined; limit: number; before: string }) {
  return {
    conversation: validConversation(req.conversation),
    limit: pageLimit(req.limit, MESSAGES_DEFAULT_LIMIT, MESSAGES_MAX_LIMIT),
    before: decodeMessagesCursor(req.before),
  };
}
