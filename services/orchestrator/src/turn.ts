// Pure turn logic: which messages go to the model, which turns are recorded,
// and what a failure means for redelivery.
import { TalonError } from '@talon/kit';
import { Role, type ChatMessage, type InboundMessage } from '@talon/proto';
import type { LlmMessage } from './llm/types.ts';
import { LlmHttpError } from './llm/client.ts';

export function roleName(r: Role): LlmMessage['role'] | 'tool' | undefined {
  switch (r) {
    case Role.ROLE_SYSTEM:
      return 'system';
    case Role.ROLE_USER:
      return 'user';
    case Role.ROLE_ASSISTANT:
      return 'assistant';
    case Role.ROLE_TOOL:
      return 'tool';
    default:
      return undefined;
  }
}

export interface StoredTurnLike {
  role: string;
  content: string;
}

/**
 * Messages for the model: our system prompt first, then client-supplied system
 * messages, then either the client's own history (OpenAI-style full history) or,
 * when the client sent a single message, the stored recent turns before it.
 */
export function buildMessages(systemPrompt: string, inbound: readonly ChatMessage[], stored: readonly StoredTurnLike[]): LlmMessage[] {
  const out: LlmMessage[] = [{ role: 'system', content: systemPrompt }];
  const conversational = inbound.filter((m) => m.role !== Role.ROLE_SYSTEM);
  for (const m of inbound) if (m.role === Role.ROLE_SYSTEM) out.push({ role: 'system', content: m.content });
  if (conversational.length <= 1) {
    for (const t of stored) {
      if (t.role === 'user' || t.role === 'assistant') out.push({ role: t.role, content: t.content });
    }
  }
  for (const m of conversational) {
    const r = roleName(m.role);
    // Tool output is never given the authority of a user message.
    if (r === 'tool') out.push({ role: 'user', content: `<untrusted source="tool">\n${m.content}\n</untrusted>` });
    else if (r === 'user' || r === 'assistant') out.push({ role: r, content: m.content });
  }
  return out;
}

/** The message of this turn that is new: the last user message the client sent. */
export function newUserMessage(inbound: InboundMessage): ChatMessage | undefined {
  for (let i = inbound.messages.length - 1; i >= 0; i--) {
    const m = inbound.messages[i]!;
    if (m.role === Role.ROLE_USER) return m;
  }
  return undefined;
}

export type FailureAction = { kind: 'retry'; delayMs: number } | { kind: 'fail'; code: string; message: string };

/** Decides between redelivery (transient) and an error reply (permanent or out of attempts). */
export function onFailure(err: unknown, attempt: number, maxDeliver: number): FailureAction {
  const te = err instanceof TalonError ? err : new TalonError('internal', 'internal error while processing the turn');
  const transient =
    err instanceof LlmHttpError
      ? err.retryable
      : ['unavailable', 'upstream_timeout', 'upstream_error', 'timeout', 'shutting_down'].includes(te.code);
  if (transient && attempt < maxDeliver) {
    return { kind: 'retry', delayMs: Math.min(30_000, 500 * 2 ** (attempt - 1)) };
  }
  return { kind: 'fail', code: te.code, message: te.message };
}
