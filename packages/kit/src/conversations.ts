// Asking about a user's conversations and memory over NATS (talon.conversations.<op>):
// the gateway asks for its authenticated caller, the CLI for an operator, and an
// orchestrator answers by calling memory. One request, one ConversationsReply; a
// failure on either side comes back as a TalonError with a stable code.
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ConversationsReply,
  DeleteConversationRequest,
  DeleteUserMemoryRequest,
  GetConversationMessagesRequest,
  ListConversationsRequest,
  UpsertDocumentRequest,
  type DeleteConversationResponse,
  type DeleteUserMemoryResponse,
  type GetConversationMessagesResponse,
  type ListConversationsResponse,
  type UpsertDocumentResponse,
} from '@talon/proto';
import { isErrorCode, TalonError } from './errors.ts';
import { SUBJECTS, type ConversationOp } from './subjects.ts';

export interface ConversationRequests {
  list: ListConversationsRequest;
  messages: GetConversationMessagesRequest;
  delete: DeleteConversationRequest;
  forget: DeleteUserMemoryRequest;
  document: UpsertDocumentRequest;
}

export interface ConversationResults {
  list: ListConversationsResponse;
  messages: GetConversationMessagesResponse;
  delete: DeleteConversationResponse;
  forget: DeleteUserMemoryResponse;
  document: UpsertDocumentResponse;
}

/** How long the asker waits: erasing a user's whole memory may touch many rows. */
export const CONVERSATION_TIMEOUT_MS: Readonly<Record<ConversationOp, number>> = {
  list: 20_000,
  messages: 20_000,
  delete: 65_000,
  forget: 65_000,
  // Chunking and embedding a large document locally takes a while.
  document: 65_000,
};

function encode<K extends ConversationOp>(op: K, req: ConversationRequests[K]): Uint8Array {
  switch (op) {
    case 'list':
      return ListConversationsRequest.encode(req as ListConversationsRequest).finish();
    case 'messages':
      return GetConversationMessagesRequest.encode(req as GetConversationMessagesRequest).finish();
    case 'delete':
      return DeleteConversationRequest.encode(req as DeleteConversationRequest).finish();
    case 'document':
      return UpsertDocumentRequest.encode(req as UpsertDocumentRequest).finish();
    default:
      return DeleteUserMemoryRequest.encode(req as DeleteUserMemoryRequest).finish();
  }
}

/** The result a reply carries for `op`, or the TalonError it reports. Pure. */
export function conversationResult<K extends ConversationOp>(op: K, reply: ConversationsReply): ConversationResults[K] {
  if (reply.error) throw new TalonError(isErrorCode(reply.error.code) ? reply.error.code : 'upstream_error', reply.error.message);
  const result = { list: reply.list, messages: reply.messages, delete: reply.deleted, forget: reply.forgotten, document: reply.document }[
    op
  ];
  if (!result) throw new TalonError('upstream_error', `the orchestrator's answer to ${op} carries no result`);
  return result as ConversationResults[K];
}

export async function askConversations<K extends ConversationOp>(
  nc: NatsConnection,
  op: K,
  req: ConversationRequests[K],
  opts: { timeoutMs?: number } = {},
): Promise<ConversationResults[K]> {
  const timeout = opts.timeoutMs ?? CONVERSATION_TIMEOUT_MS[op];
  let data: Uint8Array;
  try {
    data = (await nc.request(SUBJECTS.conversations(op), encode(op, req), { timeout })).data;
  } catch (err) {
    const e = err as Error & { isNoResponders?: () => boolean; cause?: { name?: string } };
    if (typeof e.isNoResponders === 'function' && e.isNoResponders())
      throw new TalonError('unavailable', 'no orchestrator is answering (is it running?); try again shortly', { cause: err });
    if (e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError' || /timeout/i.test(String(e.message)))
      throw new TalonError('timeout', `no answer from the orchestrator within ${timeout} ms`, { cause: err });
    throw new TalonError('unavailable', 'the request could not be sent (NATS unavailable); try again shortly', { cause: err });
  }
  let reply: ConversationsReply;
  try {
    reply = ConversationsReply.decode(data);
  } catch (err) {
    throw new TalonError('upstream_error', 'the orchestrator answered with an undecodable reply', { cause: err });
  }
  return conversationResult(op, reply);
}
