// Mattermost, the pure parts. Messages arrive over the Mattermost WebSocket API
// (wss://HOST/api/v4/websocket) that the gateway opens through egress, authenticated by
// `Authorization: Bearer {{secret:NAME}}` on the upgrade (egress fills it; the gateway never
// holds the bot token). Each `posted` event carries the post as a JSON string in data.post;
// the bot's own posts (its user id from GET /api/v4/users/me), other bots' and webhooks'
// posts and system posts start no turn. Replies are REST POST /api/v4/posts with the same
// bearer placeholder. There is no webhook: the adapter's signature check refuses.
// Mattermost does not replay events missed while disconnected (its `seq` only numbers the
// events of one connection): after a reconnect the runner asks each channel it has seen a post
// in for the posts since the last one (GET /api/v4/channels/{id}/posts?since=), and the post id
// drops what it had already.
import { createHash } from 'node:crypto';
import {
  obj,
  retryableStatus,
  splitText,
  str,
  WebhookRejected,
  type InboundEvent,
  type PlatformCall,
  type SendVerdict,
  type SignatureCheck,
  type WebhookOutcome,
} from './types.ts';

/** Mattermost ids: 26 characters of lower-case base32. */
const MM_ID = /^[a-z0-9]{26}$/;
/** Mattermost's default post size limit is 16383 characters. */
export const MATTERMOST_MAX_TEXT = 16_000;

/** The server's base URL without a trailing slash (Mattermost may be served under a path). */
function base(serverUrl: string): string {
  return serverUrl.replace(/\/+$/, '');
}

export function mattermostApiUrl(serverUrl: string): string {
  return `${base(serverUrl)}/api/v4`;
}

/** The WebSocket API: the server URL with ws(s): for http(s):. */
export function mattermostWebSocketUrl(serverUrl: string): string {
  return `${base(serverUrl).replace(/^http/, 'ws')}/api/v4/websocket`;
}

/** The upgrade's headers: the bot token as a placeholder egress fills for the server's host. */
export function mattermostAuthHeaders(tokenSecret: string): Record<string, string> {
  return { authorization: `Bearer {{secret:${tokenSecret}}}` };
}

/** GET /api/v4/users/me: the bot's own user id (its posts come back on the socket too). */
export function usersMeCall(serverUrl: string, tokenSecret: string): { method: 'GET'; url: string; headers: Record<string, string> } {
  return { method: 'GET', url: `${mattermostApiUrl(serverUrl)}/users/me`, headers: mattermostAuthHeaders(tokenSecret) };
}

export type UsersMeVerdict =
  { kind: 'me'; userId: string; username: string } | { kind: 'retry'; code: string; afterMs?: number } | { kind: 'fatal'; reason: string };

export function parseUsersMe(status: number, body: string, retryAfterHeader?: string): UsersMeVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status === 200) {
    const userId = str(j?.id, 26);
    const username = str(j?.username, 64);
    if (userId && MM_ID.test(userId))
      return { kind: 'me', userId, username: username && /^[a-z0-9._-]{1,64}$/.test(username) ? username : '' };
    return { kind: 'retry', code: 'users_me_unreadable' };
  }
  if (status === 401 || status === 403)
    return { kind: 'fatal', reason: `Mattermost refused GET /api/v4/users/me (HTTP ${status}): the bot token in the vault is not valid` };
  const afterMs = retryAfterHeader && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) * 1000 : undefined;
  return { kind: 'retry', code: `users_me_http_${status}`, ...(afterMs !== undefined ? { afterMs } : {}) };
}

/** Who the bot is: its posts (and mentions of it) are recognised by these. */
export interface MattermostBot {
  userId: string;
  username: string;
}

export type MattermostFrame =
  /** The server's greeting: the connection is authenticated and live. */
  | { kind: 'hello'; seq?: number }
  /** A user's post for the intake; `at` says where it was posted and when (for the catch-up after a reconnect). */
  | { kind: 'message'; seq?: number; event: InboundEvent; at: PostPlace }
  /** An event or reply the gateway does not act on (pong, typing, edits, own posts). */
  | { kind: 'other'; seq?: number; reason: string };

/** A post's channel, the channel's type (D: direct) and the post's create_at (ms). */
export interface PostPlace {
  channelId: string;
  channelType: string;
  createAt: number;
}

/** Parses one text frame of the WebSocket API. */
export function parseMattermostFrame(raw: string, bot: MattermostBot): MattermostFrame {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(raw));
  } catch {
    return { kind: 'other', reason: 'not JSON' };
  }
  if (!j) return { kind: 'other', reason: 'not an object' };
  const seq = typeof j.seq === 'number' && Number.isSafeInteger(j.seq) && j.seq >= 0 ? j.seq : undefined;
  const at = seq !== undefined ? { seq } : {};
  if (j.event === 'hello') return { kind: 'hello', ...at };
  if (j.event !== 'posted')
    return { kind: 'other', ...at, reason: j.seq_reply !== undefined ? 'reply' : `event ${String(j.event).slice(0, 40)}` };
  const data = obj(j.data);
  let post: Record<string, unknown> | undefined;
  try {
    post = obj(JSON.parse(str(data?.post, 1_000_000) ?? ''));
  } catch {
    post = undefined;
  }
  if (!data || !post) return { kind: 'other', ...at, reason: 'posted event without a post' };
  const channelType = str(data.channel_type, 4) ?? '';
  const outcome = mattermostPostEvent(post, channelType, str(data.sender_name, 80) ?? '', bot);
  return outcome.kind === 'message'
    ? { kind: 'message', ...at, event: outcome.event, at: { channelId: str(post.channel_id) ?? '', channelType, createAt: createAt(post) } }
    : { kind: 'other', ...at, reason: outcome.reason };
}

function createAt(post: Record<string, unknown>): number {
  return typeof post.create_at === 'number' && Number.isSafeInteger(post.create_at) && post.create_at > 0 ? post.create_at : 0;
}

/** One post (from a `posted` event or the catch-up) as a message for the intake, or why not. */
export function mattermostPostEvent(
  post: Record<string, unknown>,
  channelType: string,
  senderName: string,
  bot: MattermostBot,
): { kind: 'message'; event: InboundEvent } | { kind: 'ignore'; reason: string } {
  const id = str(post.id, 26);
  const user = str(post.user_id, 26);
  const channel = str(post.channel_id, 26);
  if (!id || !MM_ID.test(id) || !user || !MM_ID.test(user) || !channel || !MM_ID.test(channel))
    return { kind: 'ignore', reason: 'post without id, user or channel' };
  // Our own replies come back on the socket: never a turn (no loops).
  if (user === bot.userId) return { kind: 'ignore', reason: 'own post' };
  // System posts (joins, header changes) have a type; ordinary posts have none.
  if (typeof post.type === 'string' && post.type !== '') return { kind: 'ignore', reason: 'system post' };
  if (typeof post.delete_at === 'number' && post.delete_at > 0) return { kind: 'ignore', reason: 'deleted post' };
  const props = obj(post.props);
  if (props && (isTrue(props.from_bot) || isTrue(props.from_webhook))) return { kind: 'ignore', reason: 'bot or webhook post' };
  const text = str(post.message, 65_536);
  if (text === undefined || text.trim() === '') return { kind: 'ignore', reason: 'empty post' };
  const root = str(post.root_id, 26);
  // Direct messages are one running conversation; elsewhere the reply goes into the post's thread.
  const replyRoot = root && MM_ID.test(root) ? root : channelType === 'D' ? undefined : id;
  const mention = bot.username ? new RegExp(`@${bot.username.replace(/[.]/g, '\\.')}(?![a-z0-9._-])\\s*`, 'g') : undefined;
  const name = senderName.replace(/^@/, '');
  return {
    kind: 'message',
    event: {
      channel: 'mattermost',
      dedupeId: `mattermost:${id}`,
      account: user,
      displayName: name && /^[A-Za-z0-9._-]{1,64}$/.test(name) ? name : user,
      threadId: replyRoot ? `${channel}:${replyRoot}` : channel,
      text: (mention ? text.replace(mention, '').trim() : text.trim()) || text,
    },
  };
}

function isTrue(v: unknown): boolean {
  return v === true || v === 'true';
}

/** GET /api/v4/channels/{id}/posts?since=: the posts of a channel changed since `sinceMs` (the catch-up after a reconnect). */
export function channelPostsCall(
  serverUrl: string,
  tokenSecret: string,
  channelId: string,
  sinceMs: number,
): { method: 'GET'; url: string; headers: Record<string, string> } {
  if (!MM_ID.test(channelId)) throw new Error(`not a Mattermost channel id: ${channelId}`);
  return {
    method: 'GET',
    url: `${mattermostApiUrl(serverUrl)}/channels/${channelId}/posts?since=${Math.max(0, Math.floor(sinceMs))}`,
    headers: mattermostAuthHeaders(tokenSecret),
  };
}

export type ChannelPostsVerdict =
  { kind: 'posts'; posts: Array<{ post: Record<string, unknown>; createAt: number }> } | { kind: 'failed'; code: string };

/**
 * The answer of channelPostsCall ({order, posts}): the posts created at or after `sinceMs`
 * (edits of older posts come back too and are dropped), oldest first.
 */
export function parseChannelPosts(status: number, body: string, sinceMs: number): ChannelPostsVerdict {
  if (status !== 200) return { kind: 'failed', code: `http_${status}` };
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  const posts = obj(j?.posts);
  if (!posts) return { kind: 'failed', code: 'unreadable' };
  const out: Array<{ post: Record<string, unknown>; createAt: number }> = [];
  for (const v of Object.values(posts).slice(0, 1000)) {
    const post = obj(v);
    if (!post) continue;
    const at = createAt(post);
    if (at >= sinceMs) out.push({ post, createAt: at });
  }
  out.sort((a, b) => a.createAt - b.createAt);
  return { kind: 'posts', posts: out };
}

/** The WebSocket API's ping action (the server answers with seq_reply and "pong"): proves the server is there. */
export function pingFrame(seq: number): string {
  return JSON.stringify({ seq, action: 'ping' });
}

export function mattermostTarget(threadId: string): { channelId: string; rootId?: string } {
  const m = /^([a-z0-9]{26})(?::([a-z0-9]{26}))?$/.exec(threadId);
  if (!m) throw new Error(`not a Mattermost thread id: ${threadId}`);
  return m[2] ? { channelId: m[1]!, rootId: m[2] } : { channelId: m[1]! };
}

/** A stable pending_post_id per reply part (Mattermost drops a repeated one for a while after the first). */
export function mattermostPendingId(inboundId: string, part: number): string {
  return `talon:${createHash('sha256').update(`${inboundId}#${part}`).digest('hex').slice(0, 32)}`;
}

export function mattermostSend(serverUrl: string, tokenSecret: string, threadId: string, text: string, inboundId: string): PlatformCall[] {
  const t = mattermostTarget(threadId);
  return splitText(text, MATTERMOST_MAX_TEXT).map((part, i) => ({
    method: 'POST',
    url: `${mattermostApiUrl(serverUrl)}/posts`,
    headers: { 'content-type': 'application/json', ...mattermostAuthHeaders(tokenSecret) },
    body: JSON.stringify({
      channel_id: t.channelId,
      message: part,
      ...(t.rootId ? { root_id: t.rootId } : {}),
      pending_post_id: mattermostPendingId(inboundId, i),
      // @channel, @all, @here and group mentions in model output notify nobody.
      props: { mentionHighlightDisabled: true, disable_group_highlight: true },
    }),
  }));
}

export function mattermostVerdict(status: number, body: string, retryAfterHeader?: string): SendVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  if (status >= 200 && status < 300) return { ok: true, messageId: str(j?.id, 26) ?? '' };
  const afterMs = retryAfterHeader && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) * 1000 : undefined;
  if (status === 429) return { ok: false, retry: true, afterMs, code: 'rate_limited' };
  if (retryableStatus(status)) return { ok: false, retry: true, afterMs, code: `http_${status}` };
  return { ok: false, retry: false, code: `http_${status}` };
}

/** Mattermost sends nothing to /hooks/mattermost: messages arrive over the gateway's own WebSocket. */
export function mattermostSignature(): SignatureCheck {
  throw new WebhookRejected('Mattermost has no webhook here: the gateway receives its posts over the WebSocket API');
}

export function parseMattermostWebhook(): WebhookOutcome {
  return { kind: 'ignore', reason: 'Mattermost posts arrive over the WebSocket API' };
}

/** KV key of the lease under which one gateway replica holds a bot's WebSocket. */
export function mattermostLeaseKey(tokenSecret: string): string {
  return `lease.gateway.mattermost.${tokenSecret}`;
}
