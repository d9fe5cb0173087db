// The orchestrator's view of the memory service (gRPC over mTLS).
import { callUnary, createClient, type TlsMaterial } from '@talon/kit';
import {
  MemoryServiceClient,
  type AppendTurnsRequest,
  type AppendTurnsResponse,
  type ConversationRef,
  type GetHistoryRequest,
  type GetHistoryResponse,
  type Turn,
} from '@talon/proto';

export interface MemoryApi {
  append(conv: ConversationRef, turns: Turn[]): Promise<void>;
  history(conv: ConversationRef, limit: number): Promise<Turn[]>;
  close(): void;
}

export function memoryClient(address: string, tls: TlsMaterial): MemoryApi {
  const client = createClient(MemoryServiceClient, address, tls, 'memory');
  return {
    async append(conversation, turns) {
      await callUnary<AppendTurnsRequest, AppendTurnsResponse>(client, 'appendTurns', { conversation, turns });
    },
    async history(conversation, limit) {
      const res = await callUnary<GetHistoryRequest, GetHistoryResponse>(client, 'getHistory', { conversation, limit });
      return res.turns;
    },
    close: () => client.close(),
  };
}
