// WhatsApp Cloud API (Meta Graph API) webhooks at /hooks/whatsapp:
//   GET  the subscription handshake: hub.mode=subscribe, hub.verify_token (compared with the
//        vault's verify token, TOKEN scheme) and hub.challenge, echoed back only on a match;
//   POST notifications signed X-Hub-Signature-256: sha256=hex(HMAC-SHA256(app secret, raw body))
//        (checked by the vault, HMAC_SHA256_HEX scheme). Meta signs no timestamp: a replayed
//        body is caught by the message id (wamid…) dedupe, not by a replay window.
// One notification may carry several messages (entry[].changes[].value.messages[]): each text
// message is one turn. Replies go to POST {api}/{phone number id}/messages with the access token
// as a bearer placeholder; Meta lets a business answer freely only within 24 h of the user's
// last message (later sends fail permanently with 131047 until the user writes again).
import { WebhookScheme } from '@talon/proto';
import {
  HandshakeRefused,
  header,
  obj,
  parseJsonObject,
  retryableStatus,
  splitText,
  str,
  WebhookRejected,
  type HeaderBag,
  type InboundEvent,
  type PlatformCall,
  type SendVerdict,
  type SignatureCheck,
  type WebhookOutcome,
} from './types.ts';

export const WHATSAPP_SIGNATURE_HEADER = 'x-hub-signature-256';
const SIG = /^sha256=([0-9a-f]{64})$/;
/** wa_id: the user's phone number in international format, digits only. */
const WA_ID = /^\d{5,20}$/;
const PHONE_NUMBER_ID = /^\d{1,32}$/;
const MESSAGE_ID = /^[A-Za-z0-9_.=:+/-]{1,256}$/;
/** What the verify token and challenge may look like (printable ASCII, no spaces). */
const VERIFY_TOKEN = /^[\x21-\x7e]{1,256}$/;
const CHALLENGE = /^[A-Za-z0-9_.-]{1,256}$/;
/** Meta's limit for a text message body. */
export const WHATSAPP_MAX_TEXT = 4096;
/** Messages taken from one notification; Meta batches few, a forged-but-signed flood stops here. */
export const WHATSAPP_MAX_BATCH = 100;

export function whatsappSignature(headers: HeaderBag, raw: Buffer, secretName: string): SignatureCheck {
  const sig = header(headers, WHATSAPP_SIGNATURE_HEADER);
  const m = sig === undefined ? null : SIG.exec(sig);
  if (!m) throw new WebhookRejected('missing or malformed X-Hub-Signature-256 header (expected sha256=<hex>)');
  return { secretName, scheme: WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX, message: raw, signature: m[1]! };
}

/**
 * The subscription handshake's check (the vault compares the verify token) and the challenge
 * to echo once it matches. Throws HandshakeRefused for anything but a well-formed subscribe.
 */
export function whatsappVerification(query: URLSearchParams, secretName: string): { check: SignatureCheck; challenge: string } {
  const mode = query.get('hub.mode');
  const token = query.get('hub.verify_token');
  const challenge = query.get('hub.challenge');
  if (mode !== 'subscribe') throw new HandshakeRefused('hub.mode must be subscribe');
  if (token === null || !VERIFY_TOKEN.test(token)) throw new HandshakeRefused('missing or malformed hub.verify_token');
  if (challenge === null || !CHALLENGE.test(challenge)) throw new HandshakeRefused('missing or malformed hub.challenge');
  return {
    check: { secretName, scheme: WebhookScheme.WEBHOOK_SCHEME_TOKEN, message: Buffer.alloc(0), signature: token },
    challenge,
  };
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/**
 * Text messages of a notification, in order. `phoneNumberId`: messages sent to another business
 * number of the same app are not ours to answer (the reply would come from the wrong number).
 */
export function parseWhatsApp(raw: Buffer, phoneNumberId?: string): WebhookOutcome {
  const b = parseJsonObject(raw);
  if (b.object !== 'whatsapp_business_account') return { kind: 'ignore', reason: `object ${String(b.object).slice(0, 40)} not handled` };
  const events: InboundEvent[] = [];
  const skipped = new Set<string>();
  for (const entry of list(b.entry)) {
    for (const change of list(obj(entry)?.changes)) {
      const c = obj(change);
      const value = obj(c?.value);
      if (!c || !value || c.field !== 'messages') {
        skipped.add('not a messages change');
        continue;
      }
      const to = str(obj(value.metadata)?.phone_number_id, 32);
      if (phoneNumberId !== undefined && to !== undefined && to !== phoneNumberId) {
        skipped.add('message to another phone number');
        continue;
      }
      if (value.statuses !== undefined && value.messages === undefined) skipped.add('delivery statuses only');
      const contacts = list(value.contacts).map(obj);
      for (const msg of list(value.messages)) {
        const m = obj(msg);
        const from = str(m?.from, 20);
        const id = str(m?.id, 256);
        if (!m || !from || !WA_ID.test(from) || !id || !MESSAGE_ID.test(id)) {
          skipped.add('message without sender or id');
          continue;
        }
        if (m.type !== 'text') {
          skipped.add(`${String(m.type).slice(0, 40)} messages not handled`);
          continue;
        }
        const text = str(obj(m.text)?.body, 65_536);
        if (text === undefined || text.trim() === '') {
          skipped.add('empty message');
          continue;
        }
        const contact = contacts.find((x) => x?.wa_id === from) ?? (contacts.length === 1 ? contacts[0] : undefined);
        const name = str(obj(contact?.profile)?.name, 256)?.trim();
        events.push({
          channel: 'whatsapp',
          dedupeId: `whatsapp:${id}`,
          account: from,
          displayName: name ? name.slice(0, 64) : from,
          threadId: from,
          text,
        });
        if (events.length >= WHATSAPP_MAX_BATCH) return { kind: 'messages', events };
      }
    }
  }
  if (events.length === 1) return { kind: 'message', event: events[0]! };
  if (events.length > 1) return { kind: 'messages', events };
  return { kind: 'ignore', reason: [...skipped].join('; ').slice(0, 200) || 'no messages' };
}

export function whatsappSend(
  apiUrl: string,
  phoneNumberId: string | undefined,
  tokenSecret: string,
  threadId: string,
  text: string,
): PlatformCall[] {
  if (!phoneNumberId || !PHONE_NUMBER_ID.test(phoneNumberId)) throw new Error('GATEWAY_WHATSAPP_PHONE_NUMBER_ID is not set');
  if (!WA_ID.test(threadId)) throw new Error(`not a WhatsApp thread id: ${threadId}`);
  return splitText(text, WHATSAPP_MAX_TEXT).map((part) => ({
    method: 'POST',
    url: `${apiUrl.replace(/\/$/, '')}/${phoneNumberId}/messages`,
    headers: { 'content-type': 'application/json', authorization: `Bearer {{secret:${tokenSecret}}}` },
    body: JSON.stringify({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: threadId,
      type: 'text',
      text: { preview_url: false, body: part },
    }),
  }));
}

/** Graph API error codes that mean "later" even when the status is 400 (throughput and pair rate limits). */
const RETRY_CODES = new Set([4, 80007, 130429, 131048, 131056]);
/** 131047: more than 24 h since the user's last message; only a template may be sent. */
const OUTSIDE_WINDOW = 131047;

export function whatsappVerdict(status: number, body: string, retryAfterHeader?: string): SendVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status >= 200 && status < 300) {
    const first = obj(list(j?.messages)[0]);
    return { ok: true, messageId: str(first?.id, 256) ?? '' };
  }
  const afterMs = retryAfterHeader && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) * 1000 : undefined;
  const code = obj(j?.error)?.code;
  if (status === 429 || (typeof code === 'number' && RETRY_CODES.has(code)))
    return { ok: false, retry: true, afterMs, code: 'rate_limited' };
  if (retryableStatus(status)) return { ok: false, retry: true, afterMs, code: `http_${status}` };
  if (code === OUTSIDE_WINDOW) return { ok: false, retry: false, code: 'outside_24h_window' };
  return { ok: false, retry: false, code: typeof code === 'number' && Number.isSafeInteger(code) ? `graph_${code}` : `http_${status}` };
}
