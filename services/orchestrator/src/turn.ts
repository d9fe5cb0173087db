// Pure turn logic: roles, which message is new, and what a failure means for
// redelivery. (What the model sees is assembled in context.ts.)
import { asTalonError, TalonError } from '@talon/kit/errors';
import { Role, type ChatMessage, type InboundMessage, type Turn } from '@talon/proto';
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
  // A dependency that is away (the database, NATS restarting) is transient like an `unavailable` answer.
  const te = asTalonError(err);
  const transient =
    err instanceof LlmHttpError
      ? err.retryable
      : ['unavailable', 'upstream_timeout', 'upstream_error', 'timeout', 'shutting_down'].includes(te.code);
  if (transient && attempt < maxDeliver) {
    return { kind: 'retry', delayMs: Math.min(30_000, 500 * 2 ** (attempt - 1)) };
  }
  return { kind: 'fail', code: te.code, message: te.message };
}

/** Codes memory answers for a record it will never accept: retrying would not help. */
const RECORD_REFUSED = new Set(['invalid_argument', 'permission_denied', 'unauthenticated', 'payload_too_large', 'not_found']);

export type RecordFailureAction = { kind: 'retry'; delayMs: number } | { kind: 'drop'; code: string };

/**
 * A record of an answer that is out already failed: retried (by the resumer's sweep,
 * across restarts) until memory takes it — an outage has no attempt limit — unless
 * memory refused it for good. `claims`: how often it was tried so far.
 */
export function onRecordFailure(err: unknown, claims: number): RecordFailureAction {
  if (err instanceof TalonError && RECORD_REFUSED.has(err.code)) return { kind: 'drop', code: err.code };
  return { kind: 'retry', delayMs: Math.min(30_000, 1000 * 2 ** Math.min(5, Math.max(0, claims - 1))) };
}

/**
 * What memory keeps of a turn that failed for good after its user turn was stored: an
 * assistant turn (source `system`: not the model's words) saying what the user was
 * told, so the conversation holds no unanswered message and the next turn's model sees
 * that this one failed. Same id as an answer would have (idempotent).
 */
export function failedTurnRecord(inboundId: string, code: string, message: string, now = Date.now()): Turn {
  return {
    id: `${inboundId}:assistant`,
    role: 'assistant',
    source: 'system',
    content: `[no answer: this turn failed (${code}): ${message.replace(/\s+/g, ' ').trim().slice(0, 300)}]`,
    createdAtMs: now,
  };
}
