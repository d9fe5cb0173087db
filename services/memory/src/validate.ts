// Request validation for the memory API: pure, unit-tested without sockets.
import { InvalidArgument } from '@talon/kit';
import type { ConversationRef } from '@talon/proto';

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

export function validTurns(turns: readonly TurnInput[], maxBytes: number): Array<TurnInput & { role: Role; source: Source }> {
  if (turns.length === 0) throw new InvalidArgument('turns must not be empty');
  if (turns.length > 100) throw new InvalidArgument(`at most 100 turns per call (got ${turns.length})`);
  return turns.map((t, i) => {
    if (!ID.test(t.id)) throw new InvalidArgument(`turns[${i}].id must be 1-200 characters of letters, digits and :@._+-`);
    if (!(ROLES as readonly string[]).includes(t.role)) throw new InvalidArgument(`turns[${i}].role must be one of ${ROLES.join(', ')}`);
    const source = t.source === '' ? (t.role === 'assistant' ? 'assistant' : t.role === 'tool' ? 'tool' : 'user') : t.source;
    if (!(SOURCES as readonly string[]).includes(source))
      throw new InvalidArgument(`turns[${i}].source must be one of ${SOURCES.join(', ')}`);
    const bytes = Buffer.byteLength(t.content, 'utf8');
    if (bytes > maxBytes) throw new InvalidArgument(`turns[${i}].content is ${bytes} bytes; the limit is ${maxBytes}`);
    if (t.content.includes('\u0000')) throw new InvalidArgument(`turns[${i}].content contains a NUL character`);
    return { ...t, role: t.role as Role, source: source as Source };
  });
}

export function clampLimit(limit: number): number {
  if (limit <= 0) return 50;
  return Math.min(limit, 500);
}
