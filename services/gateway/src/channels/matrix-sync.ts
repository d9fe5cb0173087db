// Matrix by /sync long polling, the pure parts: the calls (the access token only as a
// {{secret:NAME}} placeholder, filled by egress), the reading of /sync and whoami answers,
// which timeline events are messages for the agent, and the `since` token kept between polls.
// The runner is matrix-runner.ts; replies are in matrix.ts.
import { matrixAccount, matrixAuth, matrixBase, matrixThreadId } from './matrix.ts';
import { obj, retryableStatus, str, type InboundEvent } from './types.ts';

/** Timeline events per room in one /sync answer; more (after a long outage) leave a gap, logged. */
export const MATRIX_TIMELINE_LIMIT = 100;

/**
 * What /sync carries: room timelines and invites only (no presence, account data, typing or
 * receipts), each timeline up to MATRIX_TIMELINE_LIMIT events. Inline filter JSON, so no filter
 * has to be uploaded first.
 */
export const MATRIX_SYNC_FILTER = JSON.stringify({
  presence: { not_types: ['*'] },
  account_data: { not_types: ['*'] },
  room: {
    account_data: { not_types: ['*'] },
    ephemeral: { not_types: ['*'] },
    timeline: { limit: MATRIX_TIMELINE_LIMIT },
  },
});

export interface MatrixCall {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** The long poll: everything after `since` (the initial sync when undefined), held up to `timeoutMs`. */
export function syncCall(homeserverUrl: string, tokenSecret: string, since: string | undefined, timeoutMs: number): MatrixCall {
  const q = new URLSearchParams({ ...(since !== undefined ? { since } : {}), timeout: String(timeoutMs), filter: MATRIX_SYNC_FILTER });
  return { method: 'GET', url: `${matrixBase(homeserverUrl)}/sync?${q.toString()}`, headers: matrixAuth(tokenSecret) };
}

/** Who the access token belongs to (the bot's user id, whose own messages are ignored). */
export function whoamiCall(homeserverUrl: string, tokenSecret: string): MatrixCall {
  return { method: 'GET', url: `${matrixBase(homeserverUrl)}/account/whoami`, headers: matrixAuth(tokenSecret) };
}

/** Accepts an invite (only with GATEWAY_MATRIX_AUTO_JOIN). */
export function joinCall(homeserverUrl: string, tokenSecret: string, roomId: string): MatrixCall {
  return {
    method: 'POST',
    url: `${matrixBase(homeserverUrl)}/rooms/${encodeURIComponent(roomId)}/join`,
    headers: { 'content-type': 'application/json', ...matrixAuth(tokenSecret) },
    body: '{}',
  };
}

/** One timeline event of a joined room, in sync order. */
export interface SyncedEvent {
  roomId: string;
  event: Record<string, unknown>;
}

export type SyncVerdict =
  | {
      kind: 'sync';
      nextBatch: string;
      /** Timeline events of joined rooms, room by room, each room's in order. */
      events: SyncedEvent[];
      /** Rooms the bot is invited to. */
      invites: string[];
      /** Rooms whose timeline was cut (more new events than one answer carries). */
      limited: string[];
    }
  /** The homeserver or the path to it failed for now (5xx, 429, timeout, egress refusal): back off and retry. */
  | { kind: 'retry'; code: string; afterMs?: number }
  /** The homeserver refused the token (401 M_UNKNOWN_TOKEN, 403): only the operator can fix it; retried slowly. */
  | { kind: 'refused'; code: string };

/** A call that did not succeed: retry later, or refused until the operator fixes it. */
export type FailureVerdict = Exclude<SyncVerdict, { kind: 'sync' }>;

const ROOM_ID = /^![^\s/]{1,254}$/;
/** A since token as stored and sent back: opaque, printable, bounded. */
const SINCE = /^[\x21-\x7e]{1,1024}$/;

function parseJson(body: string): Record<string, unknown> | undefined {
  try {
    return obj(JSON.parse(body));
  } catch {
    return undefined;
  }
}

/** The failure verdict of a non-200 answer (shared by /sync, whoami and join). */
export function failureVerdict(status: number, j: Record<string, unknown> | undefined, retryAfterHeader?: string): FailureVerdict {
  const errcode = typeof j?.errcode === 'string' && /^M_[A-Z_]{1,40}$/.test(j.errcode) ? j.errcode.toLowerCase() : undefined;
  if (status === 429 || errcode === 'm_limit_exceeded') {
    const ms = typeof j?.retry_after_ms === 'number' ? j.retry_after_ms : retryAfterHeader ? Number(retryAfterHeader) * 1000 : NaN;
    return { kind: 'retry', code: 'rate_limited', ...(Number.isFinite(ms) && ms > 0 ? { afterMs: Math.ceil(ms) } : {}) };
  }
  if (status === 200 || retryableStatus(status))
    return { kind: 'retry', code: status === 200 ? 'bad_answer' : (errcode ?? `http_${status}`) };
  return { kind: 'refused', code: errcode ?? `http_${status}` };
}

/** Reads a /sync answer: joined rooms' timeline events and invites; rooms with unusable ids are skipped. */
export function parseSync(status: number, body: string, retryAfterHeader?: string): SyncVerdict {
  const j = parseJson(body);
  if (status !== 200 || typeof j?.next_batch !== 'string' || !SINCE.test(j.next_batch)) return failureVerdict(status, j, retryAfterHeader);
  const rooms = obj(j.rooms);
  const events: SyncedEvent[] = [];
  const limited: string[] = [];
  for (const [roomId, room] of Object.entries(obj(rooms?.join) ?? {})) {
    if (!ROOM_ID.test(roomId)) continue;
    const timeline = obj(obj(room)?.timeline);
    if (timeline?.limited === true) limited.push(roomId);
    const list = Array.isArray(timeline?.events) ? timeline.events : [];
    for (const e of list) {
      const event = obj(e);
      if (event) events.push({ roomId, event });
    }
  }
  const invites = Object.keys(obj(rooms?.invite) ?? {}).filter((r) => ROOM_ID.test(r));
  return { kind: 'sync', nextBatch: j.next_batch, events, invites, limited };
}

/** The user id a whoami answer names, or the failure. */
export function parseWhoami(status: number, body: string, retryAfterHeader?: string): { kind: 'user'; userId: string } | FailureVerdict {
  const j = parseJson(body);
  const userId = str(j?.user_id, 255);
  if (status === 200 && userId && /^@[^\s:]+:\S+$/.test(userId)) return { kind: 'user', userId };
  return failureVerdict(status, j, retryAfterHeader);
}

export type TimelineOutcome = { kind: 'message'; event: InboundEvent } | { kind: 'ignore'; reason: string; encrypted?: boolean };

/**
 * Whether a timeline event is a message for the agent: a new plain-text message (m.room.message,
 * msgtype m.text, not an edit) from someone other than the bot. End-to-end encrypted events are
 * not supported (ignored, flagged for a debug line).
 */
export function timelineMessage(roomId: string, e: Record<string, unknown>, botUserId: string): TimelineOutcome {
  if (e.type === 'm.room.encrypted') return { kind: 'ignore', reason: 'end-to-end encrypted (not supported)', encrypted: true };
  if (e.type !== 'm.room.message') return { kind: 'ignore', reason: 'not a message' };
  const sender = str(e.sender, 255);
  const eventId = str(e.event_id, 255);
  if (!sender || !eventId || !/^@[^\s:]+:\S+$/.test(sender)) return { kind: 'ignore', reason: 'message without sender or id' };
  if (sender === botUserId) return { kind: 'ignore', reason: 'the bot’s own message' };
  const content = obj(e.content);
  if (content?.msgtype !== 'm.text') return { kind: 'ignore', reason: 'not a text message' };
  if (obj(content['m.relates_to'])?.rel_type === 'm.replace') return { kind: 'ignore', reason: 'an edit' };
  const text = str(content.body, 65_536);
  if (text === undefined || text.trim() === '') return { kind: 'ignore', reason: 'empty message' };
  const threadId = matrixThreadId(roomId);
  if (!threadId) return { kind: 'ignore', reason: 'unusable room id' };
  return {
    kind: 'message',
    event: { channel: 'matrix', dedupeId: `matrix:${eventId}`, account: matrixAccount(sender), displayName: sender, threadId, text },
  };
}

/**
 * The events of one /sync answer that may be messages: in a room the bot joined during this
 * batch (its own join in the timeline), only those after the join — history shown to a new
 * member is not answered.
 */
export function afterOwnJoin(events: readonly SyncedEvent[], botUserId: string): SyncedEvent[] {
  const joinedAt = new Map<string, number>();
  events.forEach((s, i) => {
    const e = s.event;
    if (e.type === 'm.room.member' && e.state_key === botUserId && obj(e.content)?.membership === 'join') joinedAt.set(s.roomId, i);
  });
  return events.filter((s, i) => i > (joinedAt.get(s.roomId) ?? -1));
}

/** KV keys of a bot (named by its token's secret, the only name the gateway knows it by). */
export function matrixSinceKey(tokenSecret: string): string {
  return `matrix.since.${tokenSecret}`;
}
export function matrixLeaseKey(tokenSecret: string): string {
  return `lease.gateway.matrix.${tokenSecret}`;
}

export function encodeSince(since: string): Uint8Array {
  return new TextEncoder().encode(since);
}

/** A stored since token, or undefined when absent or unreadable (then the initial sync starts afresh). */
export function decodeSince(value: Uint8Array | undefined): string | undefined {
  if (!value) return undefined;
  const s = new TextDecoder().decode(value);
  return SINCE.test(s) ? s : undefined;
}
