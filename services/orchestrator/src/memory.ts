// The orchestrator's view of the memory service (gRPC over mTLS).
import { callUnary, createClient, type TlsMaterial } from '@talon/kit';
import {
  MemoryServiceClient,
  type AppendTurnsRequest,
  type AppendTurnsResponse,
  type ClaimEmbeddingWorkRequest,
  type ClaimEmbeddingWorkResponse,
  type ConversationRef,
  type DeleteDocumentRequest,
  type DeleteDocumentResponse,
  type GetEmbeddingStatusRequest,
  type GetEmbeddingStatusResponse,
  type GetHistoryRequest,
  type GetHistoryResponse,
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
  upsertDocument(req: UpsertDocumentRequest): Promise<UpsertDocumentResponse>;
  deleteDocument(req: DeleteDocumentRequest): Promise<DeleteDocumentResponse>;
  claimEmbeddingWork(req: ClaimEmbeddingWorkRequest): Promise<ClaimEmbeddingWorkResponse>;
  putEmbeddings(req: PutEmbeddingsRequest): Promise<PutEmbeddingsResponse>;
  embeddingStatus(): Promise<GetEmbeddingStatusResponse>;
  close(): void;
}

export function memoryClient(address: string, tls: TlsMaterial): MemoryApi {
  const client = createClient(MemoryServiceClient, address, tls, 'memory');
  const call = <Req, Res>(method: string, req: Req, timeoutMs = 5000) => callUnary<Req, Res>(client, method, req, { timeoutMs });
  return {
    async append(conversation, turns) {
      await call<AppendTurnsRequest, AppendTurnsResponse>('appendTurns', { conversation, turns });
    },
    async history(conversation, limit) {
      const res = await call<GetHistoryRequest, GetHistoryResponse>('getHistory', { conversation, limit, roles: ['user', 'assistant'] });
      return res.turns;
    },
    search: (req) => call<SearchRequest, SearchResponse>('search', req),
    upsertDocument: (req) => call<UpsertDocumentRequest, UpsertDocumentResponse>('upsertDocument', req, 15_000),
    deleteDocument: (req) => call<DeleteDocumentRequest, DeleteDocumentResponse>('deleteDocument', req),
    claimEmbeddingWork: (req) => call<ClaimEmbeddingWorkRequest, ClaimEmbeddingWorkResponse>('claimEmbeddingWork', req, 15_000),
    putEmbeddings: (req) => call<PutEmbeddingsRequest, PutEmbeddingsResponse>('putEmbeddings', req, 15_000),
    embeddingStatus: () => call<GetEmbeddingStatusRequest, GetEmbeddingStatusResponse>('getEmbeddingStatus', {}),
    close: () => client.close(),
  };
}
