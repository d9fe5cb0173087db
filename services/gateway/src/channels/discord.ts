// Discord interactions: Ed25519 signature over "<X-Signature-Timestamp><raw body>"
// under the application's public key (kept in the vault, checked there). PING is
// answered with PONG; an application command is acknowledged at once with an
// ephemeral note and the agent's answer is posted to the channel later (through
// egress with the bot token as a placeholder, deduplicated by Discord's nonce).
import { createHash } from 'node:crypto';
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

const SIG = /^[0-9a-f]{128}$/;
const SNOWFLAKE = /^\d{1,20}$/;
export const DISCORD_MAX_TEXT = 2000;
/** Interaction response types. */
export const PONG = 1;
export const CHANNEL_MESSAGE = 4;
/** Message flag: only the invoking user sees it. */
export const EPHEMERAL = 64;

export function discordSignature(headers: HeaderBag, raw: Buffer, nowS: number, windowS: number, secretName: string): SignatureCheck {
  const sig = header(headers, 'x-signature-ed25519');
  const tsRaw = header(headers, 'x-signature-timestamp');
  if (sig === undefined || !SIG.test(sig.toLowerCase())) throw new WebhookRejected('missing or malformed X-Signature-Ed25519 header');
  const ts = checkTimestamp(tsRaw, nowS, windowS, 'X-Signature-Timestamp');
  return {
    secretName,
    scheme: WebhookScheme.WEBHOOK_SCHEME_ED25519,
    message: Buffer.concat([Buffer.from(String(ts)), raw]),
    signature: sig.toLowerCase(),
  };
}

export function ephemeral(content: string): { type: number; data: { content: string; flags: number } } {
  return { type: CHANNEL_MESSAGE, data: { content, flags: EPHEMERAL } };
}

function optionText(options: unknown): string[] {
  if (!Array.isArray(options)) return [];
  const out: string[] = [];
  for (const o of options.slice(0, 25)) {
    const opt = obj(o);
    if (!opt) continue;
    if (typeof opt.value === 'string') out.push(opt.value);
    else out.push(...optionText(opt.options));
  }
  return out;
}

export function parseDiscord(raw: Buffer): WebhookOutcome {
  const b = parseJsonObject(raw);
  if (b.type === 1) return { kind: 'respond', status: 200, body: { type: PONG } };
  const id = str(b.id, 20);
  if (!id || !SNOWFLAKE.test(id))
    return { kind: 'respond', status: 400, body: { error: { code: 'invalid_argument', message: 'interaction id missing' } } };
  if (b.type !== 2) return { kind: 'respond', status: 200, body: ephemeral('Talon only handles slash commands here.') };
  const user = obj(obj(b.member)?.user) ?? obj(b.user);
  const userId = str(user?.id, 20);
  const channel = str(b.channel_id, 20) ?? str(obj(b.channel)?.id, 20);
  if (!userId || !SNOWFLAKE.test(userId) || !channel || !SNOWFLAKE.test(channel)) {
    return { kind: 'respond', status: 200, body: ephemeral('This interaction has no user or channel.') };
  }
  if (user?.bot === true) return { kind: 'ignore', reason: 'interaction from a bot' };
  const data = obj(b.data);
  const text = optionText(data?.options).join(' ').trim() || `/${str(data?.name, 32) ?? ''}`;
  return {
    kind: 'message',
    event: {
      channel: 'discord',
      dedupeId: `discord:${id}`,
      account: userId,
      displayName: str(user?.global_name, 64) ?? str(user?.username, 64) ?? userId,
      threadId: channel,
      text: text.slice(0, 65_536),
    },
  };
}

/** Discord deduplicates message creation by nonce (at most 25 characters) when enforce_nonce is set. */
export function discordNonce(inboundId: string, part: number): string {
  return createHash('sha256').update(`${inboundId}#${part}`).digest('hex').slice(0, 25);
}

export function discordSend(apiUrl: string, botTokenSecret: string, threadId: string, text: string, inboundId: string): PlatformCall[] {
  if (!SNOWFLAKE.test(threadId)) throw new Error(`not a Discord channel id: ${threadId}`);
  return splitText(text, DISCORD_MAX_TEXT).map((part, i) => ({
    method: 'POST',
    url: `${apiUrl.replace(/\/$/, '')}/channels/${threadId}/messages`,
    headers: { 'content-type': 'application/json', authorization: `Bot {{secret:${botTokenSecret}}}` },
    // No mentions are resolved from model output (@everyone, roles, users).
    body: JSON.stringify({ content: part, nonce: discordNonce(inboundId, i), enforce_nonce: true, allowed_mentions: { parse: [] } }),
  }));
}

export function discordVerdict(status: number, body: string, retryAfterHeader?: string): SendVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status >= 200 && status < 300) return { ok: true, messageId: str(j?.id, 32) ?? '' };
  if (status === 429) {
    const s = typeof j?.retry_after === 'number' ? j.retry_after : retryAfterHeader ? Number(retryAfterHeader) : NaN;
    return { ok: false, retry: true, afterMs: Number.isFinite(s) && s > 0 ? Math.ceil(s * 1000) : undefined, code: 'rate_limited' };
  }
  if (retryableStatus(status)) return { ok: false, retry: true, code: `http_${status}` };
  return { ok: false, retry: false, code: `http_${status}` };
}
