// The orchestrator's view of the memory service (gRPC over mTLS).
import { createClient, unary, type TlsMaterial } from '@talon/kit/grpc';
import {
  MemoryServiceClient,
  type BeginTurnRequest,
  type BeginTurnResponse,
  type ClaimEmbeddingWorkRequest,
  type ClaimEmbeddingWorkResponse,
  type ConversationRef,
  type DeleteConversationRequest,
  type DeleteConversationResponse,
  type DeleteDocumentRequest,
  type DeleteDocumentResponse,
  type DeleteUserMemoryRequest,
  type DeleteUserMemoryResponse,
  type GetConversationMessagesRequest,
  type GetConversationMessagesResponse,
  type GetEmbeddingStatusResponse,
  type ListConversationsRequest,
  type ListConversationsResponse,
  type PutEmbeddingsRequest,
  type PutEmbeddingsResponse,
  type SearchRequest,
  type SearchResponse,
  type Turn,
  type UpsertDocumentRequest,
  type UpsertDocumentResponse,
} from '@talon/proto';

export interface MemoryApi {
  append(conv: ConversationRef, turns: Turn[]): Promise<void>;
  /** The conversation's recent user and assistant turns (tool records are left out). */
  history(conv: ConversationRef, limit: number): Promise<Turn[]>;
  search(req: SearchRequest): Promise<SearchResponse>;
  /**
   * The start of a turn in one round trip: stores the user turn and reads the
   * history before it in one transaction (idempotent per turn id), and recalls;
   * a failed recall is `recallFailed`, not an error.
   */
  beginTurn(req: BeginTurnRequest): Promise<BeginTurnResponse>;
  upsertDocument(req: UpsertDocumentRequest): Promise<UpsertDocumentResponse>;
  deleteDocument(req: DeleteDocumentRequest): Promise<DeleteDocumentResponse>;
  claimEmbeddingWork(req: ClaimEmbeddingWorkRequest): Promise<ClaimEmbeddingWorkResponse>;
  putEmbeddings(req: PutEmbeddingsRequest): Promise<PutEmbeddingsResponse>;
  embeddingStatus(): Promise<GetEmbeddingStatusResponse>;
  /** A user's conversations and their messages, and erasing them (see conversations.ts). */
  listConversations(req: ListConversationsRequest): Promise<ListConversationsResponse>;
  conversationMessages(req: GetConversationMessagesRequest): Promise<GetConversationMessagesResponse>;
  deleteConversation(req: DeleteConversationRequest): Promise<DeleteConversationResponse>;
  deleteUserMemory(req: DeleteUserMemoryRequest): Promise<DeleteUserMemoryResponse>;
  close(): void;
}

/** Deleting a user's whole memory touches every row they have: give it time. */
const ERASE_TIMEOUT_MS = 60_000;

export function memoryClient(address: string, tls: TlsMaterial): MemoryApi {
  const client = createClient(MemoryServiceClient, address, tls, 'memory');
  return {
    async append(conversation, turns) {
      await unary(client, client.appendTurns, { conversation, turns });
    },
    async history(conversation, limit) {
      const res = await unary(client, client.getHistory, { conversation, limit, roles: ['user', 'assistant'] });
      return res.turns;
    },
    search: (req) => unary(client, client.search, req),
    beginTurn: (req) => unary(client, client.beginTurn, req),
    upsertDocument: (req) => unary(client, client.upsertDocument, req, { timeoutMs: 15_000 }),
    deleteDocument: (req) => unary(client, client.deleteDocument, req),
    claimEmbeddingWork: (req) => unary(client, client.claimEmbeddingWork, req, { timeoutMs: 15_000 }),
    putEmbeddings: (req) => unary(client, client.putEmbeddings, req, { timeoutMs: 15_000 }),
    embeddingStatus: () => unary(client, client.getEmbeddingStatus, {}),
    listConversations: (req) => unary(client, client.listConversations, req, { timeoutMs: 15_000 }),
    conversationMessages: (req) => unary(client, client.getConversationMessages, req, { timeoutMs: 15_000 }),
    deleteConversation: (req) => unary(client, client.deleteConversation, req, { timeoutMs: ERASE_TIMEOUT_MS }),
    deleteUserMemory: (req) => unary(client, client.deleteUserMemory, req, { timeoutMs: ERASE_TIMEOUT_MS }),
    close: () => client.close(),
  };
}
