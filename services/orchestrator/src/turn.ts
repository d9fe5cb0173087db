// Pure turn logic: roles, which message is new, and what a failure means for
// redelivery. (What the model sees is assembled in context.ts.)
import { TalonError } from '@talon/kit/errors';
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
