// Matrix (client-server API), the adapter: replies by PUT /rooms/{roomId}/send/m.room.message/{txnId}
// with the access token only as a {{secret:NAME}} placeholder (filled by egress), the txnId
// derived from the inbound id so a retried send is the same event on the homeserver. Matrix
// has no webhook: messages arrive by /sync (matrix-sync.ts, matrix-runner.ts), so the webhook
// route refuses it. Plain m.text only; end-to-end encrypted rooms are not supported.
import { createHash } from 'node:crypto';
import {
  obj,
  retryableStatus,
  splitText,
  str,
  WebhookRejected,
  type PlatformCall,
  type SendVerdict,
  type SignatureCheck,
  type WebhookOutcome,
} from './types.ts';

/** One reply part: events are limited to 64 KiB on the wire, so 16 000 UTF-16 units stay well below. */
export const MATRIX_MAX_TEXT = 16_000;

const ROOM_THREAD = /^room:([A-Za-z0-9_-]{1,190})$/;

function b64url(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

/**
 * The thread id of a room: `room:` + base64url of the room id (room ids hold `!` and a server
 * name, which thread ids do not allow); undefined for a room id too long to carry.
 */
export function matrixThreadId(roomId: string): string | undefined {
  const t = `room:${b64url(roomId)}`;
  return ROOM_THREAD.test(t) ? t : undefined;
}

export function matrixRoomId(threadId: string): string {
  const m = ROOM_THREAD.exec(threadId);
  const roomId = m ? Buffer.from(m[1]!, 'base64url').toString('utf8') : '';
  if (!/^![^\s/]+$/.test(roomId) || matrixThreadId(roomId) !== threadId)
    throw new Error(`not a Matrix thread id: ${threadId.slice(0, 64)}`);
  return roomId;
}

/**
 * The pairing account of a user id (`@alice:example.org`): base64url of it when that fits
 * the account pattern (64 characters), else `h.` + a hash (base64url never holds a dot, so
 * the two forms cannot meet). The user id itself is the display name.
 */
export function matrixAccount(userId: string): string {
  const b = b64url(userId);
  return b.length <= 64 ? b : `h.${createHash('sha256').update(userId).digest('hex').slice(0, 48)}`;
}

/** Transaction id of part `part` of the reply to `inboundId`: the same reply sent again is the same event. */
export function matrixTxnId(inboundId: string, part: number): string {
  return `talon-${createHash('sha256').update(`${inboundId}#${part}`).digest('hex').slice(0, 40)}`;
}

export function matrixBase(homeserverUrl: string): string {
  return `${homeserverUrl.replace(/\/$/, '')}/_matrix/client/v3`;
}

export function matrixAuth(tokenSecret: string): Record<string, string> {
  return { authorization: `Bearer {{secret:${tokenSecret}}}` };
}

export function matrixSend(homeserverUrl: string, tokenSecret: string, threadId: string, text: string, inboundId: string): PlatformCall[] {
  const room = encodeURIComponent(matrixRoomId(threadId));
  return splitText(text, MATRIX_MAX_TEXT).map((part, i) => ({
    method: 'PUT',
    url: `${matrixBase(homeserverUrl)}/rooms/${room}/send/m.room.message/${matrixTxnId(inboundId, i)}`,
    headers: { 'content-type': 'application/json', ...matrixAuth(tokenSecret) },
    // Plain body, no `format`/`formatted_body`: model output cannot inject HTML or mentions.
    body: JSON.stringify({ msgtype: 'm.text', body: part }),
  }));
}

export function matrixVerdict(status: number, body: string, retryAfterHeader?: string): SendVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status === 200) return { ok: true, messageId: str(j?.event_id, 255) ?? '' };
  if (status === 429 || j?.errcode === 'M_LIMIT_EXCEEDED') {
    const ms = typeof j?.retry_after_ms === 'number' ? j.retry_after_ms : retryAfterHeader ? Number(retryAfterHeader) * 1000 : NaN;
    return { ok: false, retry: true, afterMs: Number.isFinite(ms) && ms > 0 ? Math.ceil(ms) : undefined, code: 'rate_limited' };
  }
  const code = typeof j?.errcode === 'string' && /^M_[A-Z_]{1,40}$/.test(j.errcode) ? j.errcode.toLowerCase() : `http_${status}`;
  if (retryableStatus(status)) return { ok: false, retry: true, code };
  return { ok: false, retry: false, code };
}

/** Nothing is POSTed by Matrix: /hooks/matrix is refused before anything is read. */
export function matrixSignature(): SignatureCheck {
  throw new WebhookRejected('Matrix has no webhook: the gateway reads it by /sync (TALON_MATRIX_HOMESERVER_URL)');
}

export function parseMatrix(): WebhookOutcome {
  return { kind: 'ignore', reason: 'Matrix has no webhook' };
}
