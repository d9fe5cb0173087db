// gRPC handlers for talon.memory.v1.MemoryService: validate, then call the store.
import { InvalidArgument, TalonError } from '@talon/kit/errors';
import type { UnaryHandler } from '@talon/kit/grpc';
import { createLogger, type Logger } from '@talon/kit/log';
import { histogram, METRICS } from '@talon/kit/metrics';
import type {
  BeginTurnRequest,
  BeginTurnResponse,
  ConversationRef,
  DeleteConversationRequest,
  DeleteConversationResponse,
  DeleteUserMemoryRequest,
  DeleteUserMemoryResponse,
  GetConversationMessagesRequest,
  GetConversationMessagesResponse,
  ListConversationsRequest,
  ListConversationsResponse,
  AppendTurnsRequest,
  AppendTurnsResponse,
  ClaimEmbeddingWorkRequest,
  ClaimEmbeddingWorkResponse,
  DeleteDocumentRequest,
  DeleteDocumentResponse,
  GetEmbeddingStatusRequest,
  GetEmbeddingStatusResponse,
  GetHistoryRequest,
  GetHistoryResponse,
  PutEmbeddingsRequest,
  PutEmbeddingsResponse,
  SearchRequest,
  SearchResponse,
  UpsertDocumentRequest,
  UpsertDocumentResponse,
} from '@talon/proto';
import { MESSAGES_PAGE_MAX_BYTES } from './conversations.ts';
import type { HnswParams } from './sql.ts';
import type { MemoryStore, SearchInput } from './store.ts';
import {
  ROLES,
  clampLimit,
  validBeginTurn,
  validClaim,
  validConversation,
  validConversationMessages,
  validListConversations,
  validDocument,
  validDocumentKey,
  validPut,
  validSearch,
  validTurns,
  validUserId,
  validVector,
} from './validate.ts';

/** The only identity that may call MemoryService, every method of it (docs/architecture.md §6). */
export const MEMORY_CALLERS: readonly string[] = ['orchestrator'];

export interface HandlerOptions {
  /** Called after turns are stored unindexed, so they are indexed right away in the background. */
  onTurnsStored?: (conversation: ConversationRef) => void;
  /** Awaited before a search: the turns it could find, stored before it, are indexed (read-your-writes). */
  beforeSearch?: (search: SearchInput) => Promise<void>;
  maxTurnBytes: number;
  maxDocumentBytes: number;
  searchMaxLimit: number;
  hnsw: HnswParams;
  /** Where a failed recall of BeginTurn is reported (the call itself succeeds); default: a memory logger. */
  log?: Logger;
}

const searchDuration = histogram(METRICS.memorySearchDuration);

/** Times a search in the database (successful or not) by the method that ran it. */
async function timed<T>(search: Promise<T>, method: 'search' | 'recall'): Promise<T> {
  const done = searchDuration.startTimer();
  try {
    return await search;
  } finally {
    done({ method });
  }
}

export function memoryHandlers(store: MemoryStore, opts: HandlerOptions) {
  const emb = { model: store.model, dim: store.dim };
  const local = store.opts.embedder !== undefined;
  const log = opts.log ?? createLogger({ service: 'memory' });

  const appendTurns: UnaryHandler<AppendTurnsRequest, AppendTurnsResponse> = async (req) => {
    const conv = validConversation(req.conversation);
    const turns = validTurns(req.turns, opts.maxTurnBytes);
    const res = await store.appendTurns(
      conv,
      turns.map((t, i) => ({ ...t, createdAtMs: req.turns[i]?.createdAtMs })),
      { index: opts.onTurnsStored ? 'deferred' : 'inline' },
    );
    if (res.inserted > 0) opts.onTurnsStored?.(conv);
    return { conversationId: res.conversationId, inserted: res.inserted };
  };

  const getHistory: UnaryHandler<GetHistoryRequest, GetHistoryResponse> = async (req) => {
    const conv = validConversation(req.conversation);
    const roles = req.roles.filter((r) => (ROLES as readonly string[]).includes(r));
    if (roles.length !== req.roles.length) throw new InvalidArgument(`roles must be among ${ROLES.join(', ')}`);
    const turns = await store.history(conv, clampLimit(req.limit), roles);
    return { turns };
  };

  const search: UnaryHandler<SearchRequest, SearchResponse> = async (req) => {
    const input = validSearch(req, { ...emb, maxLimit: opts.searchMaxLimit });
    await opts.beforeSearch?.(input);
    const res = await timed(store.search(input), 'search');
    return { hits: res.hits, vectorUsed: res.vectorUsed };
  };

  // Validates every part before anything is stored; then stores the user turn and
  // reads the history in one transaction while recall runs alongside (it leaves the
  // conversation being answered out, so it need not see the new turn).
  const beginTurn: UnaryHandler<BeginTurnRequest, BeginTurnResponse> = async (req) => {
    const q = validBeginTurn(req, { ...emb, maxLimit: opts.searchMaxLimit, maxTurnBytes: opts.maxTurnBytes });
    const recall = async (): Promise<{ recalled: BeginTurnResponse['recalled']; recallFailed: boolean }> => {
      if (!q.recall) return { recalled: [], recallFailed: false };
      const { queryEmbedding, ...input } = q.recall;
      try {
        const vector = validVector(queryEmbedding, emb, 'recall.query_embedding');
        const search: SearchInput = { ...input, ...(vector ? { vector } : {}) };
        await opts.beforeSearch?.(search);
        return { recalled: (await timed(store.search(search), 'recall')).hits, recallFailed: false };
      } catch (err) {
        // Recall is an aid: the turn is answered without it.
        log.warn(
          { err: (err as Error).message, code: err instanceof TalonError ? err.code : 'internal', method: 'beginTurn' },
          'recall failed; the turn goes on without it',
        );
        return { recalled: [], recallFailed: true };
      }
    };
    const [stored, recalled] = await Promise.all([
      store.beginTurn(q.conversation, q.userTurn, q.historyLimit, { index: opts.onTurnsStored ? 'deferred' : 'inline' }),
      recall(),
    ]);
    if (stored.inserted > 0) opts.onTurnsStored?.(q.conversation);
    return { history: stored.history, ...recalled };
  };

  const upsertDocument: UnaryHandler<UpsertDocumentRequest, UpsertDocumentResponse> = async (req) => {
    const doc = validDocument(req, opts.maxDocumentBytes);
    return store.upsertDocument(doc);
  };

  const deleteDocument: UnaryHandler<DeleteDocumentRequest, DeleteDocumentResponse> = async (req) => {
    const { userId, key } = validDocumentKey(req.userId, req.key);
    return store.deleteDocument(userId, key);
  };

  const claimEmbeddingWork: UnaryHandler<ClaimEmbeddingWorkRequest, ClaimEmbeddingWorkResponse> = async (req) => {
    const c = validClaim(req, emb);
    const items = await store.claimEmbeddingWork(c.after, c.limit, c.leaseMs);
    return { items: items.map((i) => ({ chunkId: i.id, content: i.content })) };
  };

  const putEmbeddings: UnaryHandler<PutEmbeddingsRequest, PutEmbeddingsResponse> = async (req) => {
    const items = validPut(req, emb);
    return { updated: await store.putEmbeddings(items) };
  };

  const getEmbeddingStatus: UnaryHandler<GetEmbeddingStatusRequest, GetEmbeddingStatusResponse> = async () => {
    const s = await store.embeddingStatus(opts.hnsw);
    return { model: store.model, dim: store.dim, local, chunks: s.chunks, current: s.current, indexReady: s.indexReady };
  };

  // The same answer whether the conversation never existed or is another user's.
  const noSuchConversation = (c: ConversationRef) =>
    new TalonError('not_found', `no conversation ${c.channel}/${c.threadId} for this user`);

  const listConversations: UnaryHandler<ListConversationsRequest, ListConversationsResponse> = async (req) => {
    const q = validListConversations(req);
    const page = await store.listConversations(q.userId, q);
    return { conversations: page.conversations, nextBefore: page.next };
  };

  const getConversationMessages: UnaryHandler<GetConversationMessagesRequest, GetConversationMessagesResponse> = async (req) => {
    const q = validConversationMessages(req);
    const page = await store.conversationMessages(q.conversation, { ...q, maxBytes: MESSAGES_PAGE_MAX_BYTES });
    if (!page) throw noSuchConversation(q.conversation);
    return page;
  };

  const deleteConversation: UnaryHandler<DeleteConversationRequest, DeleteConversationResponse> = async (req) => {
    const conv = validConversation(req.conversation);
    const res = await store.deleteConversation(conv);
    if (!res) throw noSuchConversation(conv);
    return res;
  };

  const deleteUserMemory: UnaryHandler<DeleteUserMemoryRequest, DeleteUserMemoryResponse> = async (req) => {
    return store.deleteUserMemory(validUserId(req.userId));
  };

  return {
    appendTurns,
    getHistory,
    search,
    beginTurn,
    upsertDocument,
    deleteDocument,
    claimEmbeddingWork,
    putEmbeddings,
    getEmbeddingStatus,
    listConversations,
    getConversationMessages,
    deleteConversation,
    deleteUserMemory,
  };
}
