// The generic signed webhook (/hooks/webhook) for systems without a platform of
// their own: X-Talon-Timestamp (unix seconds) and X-Talon-Signature:
// sha256=hex(HMAC-SHA256("<timestamp>.<raw body>")), key in the vault. Body:
//   {"id": "...", "user": "...", "text": "...", "source"?: "...", "thread"?: "...", "user_name"?: "..."}
// Replies go to TALON_WEBHOOK_CALLBACK_URL (when set) as JSON with a bearer token placeholder.
import { WebhookScheme } from '@talon/proto';
import {
  checkTimestamp,
  header,
  parseJsonObject,
  retryableStatus,
  splitText,
  str,
  WebhookRejected,
  type HeaderBag,
  type PlatformCall,
  type SendVerdict,
  type SignatureCheck,
  type WebhookOutcome,
} from './types.ts';

const SIG = /^sha256=([0-9a-f]{64})$/;
const PART = /^[A-Za-z0-9_-]{1,64}$/;
const THREAD = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,127}$/;
const MSG_ID = /^[A-Za-z0-9:@._+-]{1,128}$/;
export const WEBHOOK_MAX_TEXT = 32_000;

export function webhookSignature(headers: HeaderBag, raw: Buffer, nowS: number, windowS: number, secretName: string): SignatureCheck {
  const sig = header(headers, 'x-talon-signature');
  const m = sig === undefined ? null : SIG.exec(sig);
  if (!m) throw new WebhookRejected('missing or malformed X-Talon-Signature header (expected sha256=<hex>)');
  const ts = checkTimestamp(header(headers, 'x-talon-timestamp'), nowS, windowS, 'X-Talon-Timestamp');
  return {
    secretName,
    scheme: WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX,
    message: Buffer.concat([Buffer.from(`${ts}.`), raw]),
    signature: m[1]!,
  };
}

function bad(message: string): WebhookOutcome {
  return { kind: 'respond', status: 400, body: { error: { code: 'invalid_argument', message } } };
}

export function parseWebhook(raw: Buffer): WebhookOutcome {
  const b = parseJsonObject(raw);
  const id = str(b.id, 128);
  const user = str(b.user, 64);
  const source = b.source === undefined ? 'default' : str(b.source, 64);
  const text = str(b.text, 65_536);
  const thread = b.thread === undefined ? undefined : str(b.thread, 128);
  if (!id || !MSG_ID.test(id)) return bad('id must be 1-128 characters of letters, digits and :@._+-');
  if (!user || !PART.test(user)) return bad('user must be 1-64 characters of letters, digits, _ and -');
  if (!source || !PART.test(source)) return bad('source must be 1-64 characters of letters, digits, _ and -');
  if (thread !== undefined && !THREAD.test(thread))
    return bad('thread must be 1-128 characters of letters, digits and :@._+- (starting with a letter or digit)');
  if (text === undefined || text.trim() === '') return bad('text must be a non-empty string');
  return {
    kind: 'message',
    event: {
      channel: 'webhook',
      dedupeId: `webhook:${source}:${id}`,
      account: `${source}.${user}`,
      displayName: str(b.user_name, 64) ?? user,
      threadId: thread ?? `${source}.${user}`,
      text,
    },
  };
}

export function webhookSend(
  callbackUrl: string,
  tokenSecret: string,
  threadId: string,
  text: string,
  inboundId: string,
  error?: string,
): PlatformCall[] {
  const parts = splitText(text, WEBHOOK_MAX_TEXT);
  return parts.map((part, i) => ({
    method: 'POST',
    url: callbackUrl,
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer {{secret:${tokenSecret}}}`,
      'idempotency-key': `${inboundId}.${i}`,
    },
    body: JSON.stringify({ id: inboundId, part: i, parts: parts.length, thread: threadId, text: part, ...(error ? { error } : {}) }),
  }));
}

export function webhookVerdict(status: number, _body: string, retryAfterHeader?: string): SendVerdict {
  if (status >= 200 && status < 300) return { ok: true, messageId: '' };
  const afterMs = retryAfterHeader && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) * 1000 : undefined;
  if (retryableStatus(status)) return { ok: false, retry: true, afterMs, code: `http_${status}` };
  return { ok: false, retry: false, code: `http_${status}` };
}
