// Telegram long polling (getUpdates), the pure parts: the calls (with the bot token only as a
// {{secret:NAME}} placeholder, filled by egress), the reading of getUpdates answers, the
// offset, and the reconnect delay. The runner is telegram-poller.ts.
import { intId, obj, retryableStatus, type PlatformCall } from './types.ts';

/** Longest long poll Telegram allows (seconds). */
export const TELEGRAM_MAX_POLL_TIMEOUT_S = 50;
/** Updates per getUpdates answer (Telegram's maximum). */
export const TELEGRAM_POLL_LIMIT = 100;

function base(apiUrl: string, botTokenSecret: string): string {
  return `${apiUrl.replace(/\/$/, '')}/bot{{secret:${botTokenSecret}}}`;
}

/** The long poll: updates from `offset` (all unconfirmed when undefined), held up to `timeoutS`; new messages only. */
export function getUpdatesCall(apiUrl: string, botTokenSecret: string, offset: number | undefined, timeoutS: number): PlatformCall {
  return {
    method: 'POST',
    url: `${base(apiUrl, botTokenSecret)}/getUpdates`,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      ...(offset !== undefined ? { offset } : {}),
      timeout: timeoutS,
      limit: TELEGRAM_POLL_LIMIT,
      allowed_updates: ['message'],
    }),
  };
}

/** Removes the bot's webhook (getUpdates is refused while one is set); pending updates are kept. */
export function deleteWebhookCall(apiUrl: string, botTokenSecret: string): PlatformCall {
  return {
    method: 'POST',
    url: `${base(apiUrl, botTokenSecret)}/deleteWebhook`,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ drop_pending_updates: false }),
  };
}

/** One update of a getUpdates answer: its id and its own JSON (what a webhook would have carried). */
export interface PolledUpdate {
  updateId: number;
  raw: Buffer;
}

export type PollVerdict =
  | { kind: 'updates'; updates: PolledUpdate[] }
  /** 409 because a webhook is set: delete it (once) and poll again. */
  | { kind: 'webhook_active' }
  /** 409 because another getUpdates runs with this token (another bot process). */
  | { kind: 'conflict' }
  /** The platform or the path to it failed for now (5xx, 429, timeout, egress refusal): back off and retry. */
  | { kind: 'retry'; code: string; afterMs?: number }
  /** The platform refused the bot (401 bad token, 404): only the operator can fix it; retried slowly. */
  | { kind: 'refused'; code: string };

/**
 * Reads a getUpdates answer. Updates without a usable update_id are dropped (nothing could
 * confirm them); the others come back sorted by id.
 */
export function parseUpdates(status: number, body: string, retryAfterHeader?: string): PollVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status === 200 && j?.ok === true && Array.isArray(j.result)) {
    const updates: PolledUpdate[] = [];
    for (const u of j.result) {
      const id = intId(obj(u)?.update_id);
      if (id === undefined) continue;
      updates.push({ updateId: Number(id), raw: Buffer.from(JSON.stringify(u)) });
    }
    updates.sort((a, b) => a.updateId - b.updateId);
    return { kind: 'updates', updates };
  }
  if (status === 409) {
    const description = typeof j?.description === 'string' ? j.description : '';
    return /webhook/i.test(description) ? { kind: 'webhook_active' } : { kind: 'conflict' };
  }
  const retryAfter = obj(j?.parameters)?.retry_after ?? (retryAfterHeader ? Number(retryAfterHeader) : undefined);
  if (status === 429 || typeof retryAfter === 'number') {
    return {
      kind: 'retry',
      code: 'rate_limited',
      ...(typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter > 0 ? { afterMs: retryAfter * 1000 } : {}),
    };
  }
  if (status === 200 || retryableStatus(status)) return { kind: 'retry', code: status === 200 ? 'bad_answer' : `http_${status}` };
  return { kind: 'refused', code: `http_${status}` };
}

/** The offset that confirms every update up to the newest of `updates`. */
export function nextOffset(current: number | undefined, updates: readonly PolledUpdate[]): number | undefined {
  let next = current;
  for (const u of updates) if (next === undefined || u.updateId + 1 > next) next = u.updateId + 1;
  return next;
}

/**
 * Reconnect delay after `failures` failures in a row: exponential from `baseMs` up to `maxMs`
 * with full jitter (so replicas and bots do not retry in step), never below the platform's
 * retry_after.
 */
export function reconnectDelayMs(failures: number, baseMs: number, maxMs: number, afterMs = 0, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  const jittered = cap / 2 + random() * (cap / 2);
  return Math.max(afterMs, Math.round(jittered));
}

/** KV keys of a bot (named by its token's secret, the only name the gateway knows it by). */
export function telegramOffsetKey(botTokenSecret: string): string {
  return `telegram.offset.${botTokenSecret}`;
}
export function telegramLeaseKey(botTokenSecret: string): string {
  return `lease.gateway.telegram.${botTokenSecret}`;
}

/**
 * Telegram picks the next update id at random after a week without updates, so an offset
 * stored longer ago than this is not trusted: polling starts from the unconfirmed updates
 * (Telegram keeps those a day; ones already queued are dropped by their message id).
 */
export const OFFSET_MAX_AGE_MS = 6 * 86_400_000;

export function encodeOffset(offset: number): Uint8Array {
  return new TextEncoder().encode(String(offset));
}

/** A stored offset, or undefined when absent, unreadable or too old (`storedAtMs`: when it was written). */
export function decodeOffset(value: Uint8Array | undefined, storedAtMs: number, nowMs: number): number | undefined {
  if (!value || nowMs - storedAtMs > OFFSET_MAX_AGE_MS) return undefined;
  const s = new TextDecoder().decode(value);
  if (!/^\d{1,16}$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}
