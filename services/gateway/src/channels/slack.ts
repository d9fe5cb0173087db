// Slack Events API: requests are signed with the app's signing secret as
// v0=hex(HMAC-SHA256("v0:<timestamp>:<raw body>")) and refused outside the replay
// window. url_verification (also signed) is answered with its challenge.
import { WebhookScheme } from '@talon/proto';
import {
  checkTimestamp,
  header,
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

const SIG = /^v0=([0-9a-f]{64})$/;
const SLACK_ID = /^[A-Z0-9]{1,32}$/;
const SLACK_TS = /^\d{1,12}\.\d{1,9}$/;
export const SLACK_MAX_TEXT = 3500;

export function slackSignature(headers: HeaderBag, raw: Buffer, nowS: number, windowS: number, secretName: string): SignatureCheck {
  const tsRaw = header(headers, 'x-slack-request-timestamp');
  const sig = header(headers, 'x-slack-signature');
  const m = sig === undefined ? null : SIG.exec(sig);
  if (!m) throw new WebhookRejected('missing or malformed X-Slack-Signature header');
  const ts = checkTimestamp(tsRaw, nowS, windowS, 'X-Slack-Request-Timestamp');
  return {
    secretName,
    scheme: WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX,
    message: Buffer.concat([Buffer.from(`v0:${ts}:`), raw]),
    signature: m[1]!,
  };
}

export function parseSlack(raw: Buffer): WebhookOutcome {
  const b = parseJsonObject(raw);
  if (b.type === 'url_verification') {
    const challenge = str(b.challenge, 512);
    if (challenge === undefined)
      return { kind: 'respond', status: 400, body: { error: { code: 'invalid_argument', message: 'challenge missing' } } };
    return { kind: 'respond', status: 200, body: { challenge } };
  }
  if (b.type !== 'event_callback') return { kind: 'ignore', reason: `event type ${String(b.type).slice(0, 40)} not handled` };
  const team = str(b.team_id, 32);
  const ev = obj(b.event);
  if (!team || !SLACK_ID.test(team) || !ev) return { kind: 'ignore', reason: 'event without team or body' };
  if (ev.type !== 'message' && ev.type !== 'app_mention')
    return { kind: 'ignore', reason: `event ${String(ev.type).slice(0, 40)} not handled` };
  // Bot messages (including our own replies) and edits/joins never reach the agent: no loops.
  if (ev.bot_id !== undefined || ev.subtype !== undefined) return { kind: 'ignore', reason: 'bot message or message subtype' };
  const user = str(ev.user, 32);
  const channel = str(ev.channel, 32);
  const ts = str(ev.ts, 32);
  const text = str(ev.text, 65_536);
  if (!user || !SLACK_ID.test(user) || !channel || !SLACK_ID.test(channel) || !ts || !SLACK_TS.test(ts)) {
    return { kind: 'ignore', reason: 'message without user, channel or ts' };
  }
  if (text === undefined || text.trim() === '') return { kind: 'ignore', reason: 'empty message' };
  const threadTs = str(ev.thread_ts, 32);
  const inDm = ev.channel_type === 'im';
  // Direct messages are one running conversation; in channels the reply goes into the message's thread.
  const replyTs = threadTs && SLACK_TS.test(threadTs) ? threadTs : inDm ? undefined : ts;
  return {
    kind: 'message',
    event: {
      channel: 'slack',
      // message and app_mention events of one message share channel and ts.
      dedupeId: `slack:${team}:${channel}:${ts}`,
      account: `${team}.${user}`,
      displayName: user,
      threadId: replyTs ? `${channel}:${replyTs}` : channel,
      text: text.replace(/<@[A-Z0-9]+>\s*/g, '').trim() || text,
    },
  };
}

/** Slack's three control characters; escaping them also defuses <!channel>-style mentions from model output. */
export function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function slackTarget(threadId: string): { channel: string; threadTs?: string } {
  const m = /^([A-Z0-9]{1,32})(?::(\d{1,12}\.\d{1,9}))?$/.exec(threadId);
  if (!m) throw new Error(`not a Slack thread id: ${threadId}`);
  return m[2] ? { channel: m[1]!, threadTs: m[2] } : { channel: m[1]! };
}

export function slackSend(apiUrl: string, botTokenSecret: string, threadId: string, text: string): PlatformCall[] {
  const t = slackTarget(threadId);
  return splitText(text, SLACK_MAX_TEXT).map((part) => ({
    method: 'POST',
    url: `${apiUrl.replace(/\/$/, '')}/chat.postMessage`,
    headers: { 'content-type': 'application/json; charset=utf-8', authorization: `Bearer {{secret:${botTokenSecret}}}` },
    body: JSON.stringify({
      channel: t.channel,
      text: slackEscape(part),
      ...(t.threadTs ? { thread_ts: t.threadTs } : {}),
      unfurl_links: false,
    }),
  }));
}

const SLACK_RETRY_ERRORS = new Set(['ratelimited', 'internal_error', 'fatal_error', 'service_unavailable', 'request_timeout']);

export function slackVerdict(status: number, body: string, retryAfterHeader?: string): SendVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  const afterMs = retryAfterHeader && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) * 1000 : undefined;
  if (status === 200 && j?.ok === true) return { ok: true, messageId: str(j.ts, 64) ?? '' };
  if (status === 429) return { ok: false, retry: true, afterMs, code: 'rate_limited' };
  if (retryableStatus(status)) return { ok: false, retry: true, afterMs, code: `http_${status}` };
  const err = str(j?.error, 64) ?? `http_${status}`;
  const code = /^[a-z_]{1,64}$/.test(err) ? err : 'unknown_error';
  return SLACK_RETRY_ERRORS.has(code) ? { ok: false, retry: true, afterMs, code } : { ok: false, retry: false, code };
}
