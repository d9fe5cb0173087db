// Telegram Bot API webhooks: the request carries the secret_token given to
// setWebhook in X-Telegram-Bot-Api-Secret-Token (checked by the vault, TOKEN
// scheme). There is no timestamp to check; update_id deduplicates retries.
import { WebhookScheme } from '@talon/proto';
import {
  header,
  intId,
  obj,
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

export const TELEGRAM_SECRET_HEADER = 'x-telegram-bot-api-secret-token';
const SECRET_TOKEN = /^[A-Za-z0-9_-]{1,256}$/;
export const TELEGRAM_MAX_TEXT = 4096;

export function telegramSignature(headers: HeaderBag, secretName: string): SignatureCheck {
  const token = header(headers, TELEGRAM_SECRET_HEADER);
  if (token === undefined || !SECRET_TOKEN.test(token)) throw new WebhookRejected(`missing or malformed ${TELEGRAM_SECRET_HEADER} header`);
  return { secretName, scheme: WebhookScheme.WEBHOOK_SCHEME_TOKEN, message: Buffer.alloc(0), signature: token };
}

export function parseTelegram(raw: Buffer): WebhookOutcome {
  const u = parseJsonObject(raw);
  const updateId = intId(u.update_id);
  if (updateId === undefined)
    return { kind: 'respond', status: 400, body: { error: { code: 'invalid_argument', message: 'update_id missing' } } };
  const m = obj(u.message);
  if (!m) return { kind: 'ignore', reason: 'not a new message (edits, channel posts, callbacks are not handled)' };
  const from = obj(m.from);
  const chat = obj(m.chat);
  const fromId = intId(from?.id);
  const chatId = intId(chat?.id);
  if (!from || fromId === undefined || chatId === undefined) return { kind: 'ignore', reason: 'message without sender or chat' };
  if (from.is_bot === true) return { kind: 'ignore', reason: 'message from a bot' };
  const text = str(m.text, 65_536);
  if (text === undefined || text.trim() === '') return { kind: 'ignore', reason: 'not a text message' };
  const displayName = (str(from.username, 64) ?? [str(from.first_name, 64), str(from.last_name, 64)].filter(Boolean).join(' ')) || fromId;
  return {
    kind: 'message',
    event: {
      channel: 'telegram',
      dedupeId: `telegram:${updateId}`,
      account: fromId,
      displayName,
      threadId: `chat:${chatId}`,
      text,
    },
  };
}

export function telegramChatId(threadId: string): string {
  const m = /^chat:(-?\d{1,20})$/.exec(threadId);
  if (!m) throw new Error(`not a Telegram thread id: ${threadId}`);
  return m[1]!;
}

export function telegramSend(apiUrl: string, botTokenSecret: string, threadId: string, text: string): PlatformCall[] {
  const chatId = telegramChatId(threadId);
  const n = Number(chatId);
  return splitText(text, TELEGRAM_MAX_TEXT).map((part) => ({
    method: 'POST',
    url: `${apiUrl.replace(/\/$/, '')}/bot{{secret:${botTokenSecret}}}/sendMessage`,
    headers: { 'content-type': 'application/json' },
    // Plain text (no parse_mode): model output cannot inject Telegram markup.
    body: JSON.stringify({ chat_id: Number.isSafeInteger(n) ? n : chatId, text: part, link_preview_options: { is_disabled: true } }),
  }));
}

export function telegramVerdict(status: number, body: string, retryAfterHeader?: string): SendVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status === 200 && j?.ok === true) {
    const id = intId(obj(j.result)?.message_id);
    return { ok: true, messageId: id ?? '' };
  }
  const retryAfter = obj(j?.parameters)?.retry_after ?? (retryAfterHeader ? Number(retryAfterHeader) : undefined);
  if (status === 429 || typeof retryAfter === 'number') {
    return {
      ok: false,
      retry: true,
      afterMs: typeof retryAfter === 'number' && retryAfter > 0 ? retryAfter * 1000 : undefined,
      code: 'rate_limited',
    };
  }
  if (retryableStatus(status)) return { ok: false, retry: true, code: `http_${status}` };
  return { ok: false, retry: false, code: `http_${status}` };
}
