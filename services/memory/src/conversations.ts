// Pure pieces of listing, reading and erasing conversations: page cursors, titles,
// limits and the erasure rule. Unit-tested without a database.
import { InvalidArgument } from '@talon/kit/errors';

/** Conversations per page: default and most. */
export const CONVERSATIONS_DEFAULT_LIMIT = 50;
export const CONVERSATIONS_MAX_LIMIT = 200;
/** Messages per page: default and most. */
export const MESSAGES_DEFAULT_LIMIT = 100;
export const MESSAGES_MAX_LIMIT = 500;
/**
 * Text a page of messages carries at most (it travels back over NATS, whose
 * payloads are capped at a few MiB); the rest comes with the next page.
 */
export const MESSAGES_PAGE_MAX_BYTES = 2 * 1024 * 1024;
/** Longest title (characters), taken from the first user message. */
export const TITLE_CHARS = 80;
/**
 * How long an erasure keeps late turns out: far longer than any retry or
 * redelivery of a turn that was under way when the user deleted.
 */
export const ERASURE_HOLD_MS = 24 * 60 * 60 * 1000;

export function pageLimit(limit: number, def: number, max: number): number {
  if (!Number.isFinite(limit) || limit <= 0) return def;
  return Math.min(Math.trunc(limit), max);
}

/** Position in the newest-first list of conversations: last activity, then id. */
export interface ConversationCursor {
  /** Last activity as PostgreSQL prints it in UTC with microseconds (exact, unlike a float). */
  at: string;
  id: string;
}

const CURSOR_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Opaque to callers (base64url), so they never build or depend on one. */
export function encodeConversationCursor(c: ConversationCursor): string {
  return Buffer.from(`${c.at}|${c.id}`, 'utf8').toString('base64url');
}

export function decodeConversationCursor(s: string): ConversationCursor | undefined {
  if (s === '') return undefined;
  const bad = () => new InvalidArgument('before is not a cursor from a previous page (use next_before as returned)');
  if (s.length > 120 || !/^[A-Za-z0-9_-]+$/.test(s)) throw bad();
  const [at, id, ...rest] = Buffer.from(s, 'base64url').toString('utf8').split('|');
  if (rest.length > 0 || at === undefined || id === undefined || !CURSOR_AT.test(at) || !UUID.test(id)) throw bad();
  return { at, id };
}

/** The messages cursor: the internal id of the oldest message already returned. */
export function decodeMessagesCursor(s: string): string | undefined {
  if (s === '') return undefined;
  if (!/^[1-9][0-9]{0,18}$/.test(s)) throw new InvalidArgument('before is not a cursor from a previous page (use next_before as returned)');
  return s;
}

/** A conversation's title: its first user message on one line, at most TITLE_CHARS characters. */
export function conversationTitle(firstUserMessage: string | null | undefined): string {
  const line = (firstUserMessage ?? '').replace(/\s+/gu, ' ').trim();
  const chars = Array.from(line);
  if (chars.length <= TITLE_CHARS) return line;
  return `${chars
    .slice(0, TITLE_CHARS - 1)
    .join('')
    .trimEnd()}…`;
}

/**
 * Which turns an erasure keeps out: those created at or before it. A turn
 * without a creation time is created now, after any erasure.
 */
export function survivesErasure(createdAtMs: number | undefined, erasedAtMs: number | undefined): boolean {
  if (erasedAtMs === undefined) return true;
  if (!createdAtMs) return true;
  return createdAtMs > erasedAtMs;
}
