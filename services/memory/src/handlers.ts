// gRPC handlers for talon.memory.v1.MemoryService.
import type { UnaryHandler } from '@talon/kit';
import type { AppendTurnsRequest, AppendTurnsResponse, GetHistoryRequest, GetHistoryResponse } from '@talon/proto';
import type { MemoryStore } from './store.ts';
import { clampLimit, validConversation, validTurns } from './validate.ts';

export function memoryHandlers(store: MemoryStore, opts: { maxTurnBytes: number }) {
  const appendTurns: UnaryHandler<AppendTurnsRequest, AppendTurnsResponse> = async (req) => {
    const conv = validConversation(req.conversation);
    const turns = validTurns(req.turns, opts.maxTurnBytes);
    const res = await store.appendTurns(
      conv,
      turns.map((t, i) => ({ ...t, createdAtMs: req.turns[i]?.createdAtMs })),
    );
    return { conversationId: res.conversationId, inserted: res.inserted };
  };
  const getHistory: UnaryHandler<GetHistoryRequest, GetHistoryResponse> = async (req) => {
    const conv = validConversation(req.conversation);
    const turns = await store.history(conv, clampLimit(req.limit));
    return { turns };
  };
  return { appendTurns, getHistory };
}
