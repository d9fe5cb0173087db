// The caller's own conversations and memory (bearer token, user or operator scope;
// both act on the token's own user — operators reach other users with
// `talon memory`):
//   GET    /v1/conversations[?limit=&before=&channel=]      newest activity first
//   GET    /v1/conversations/{id}/messages[?channel=&limit=&before=]
//   DELETE /v1/conversations/{id}[?channel=]
//   DELETE /v1/memory                                       every conversation and memory document
// {id} is the conversation's thread id. The OpenAI-compatible API names it with
// x-talon-conversation / metadata.conversation_id on channel `api`, the default; a
// conversation of another channel (web, telegram, slack...) is addressed with
// ?channel=, as the listing reports it. Pages continue with ?before=<nextBefore>.
// The gateway never reaches memory itself: it asks an orchestrator over NATS, for
// the authenticated principal's user only (never a user named in the request). A
// conversation the user does not have answers 404, whether or not someone else has it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { askConversations, type ConversationRequests, type ConversationResults } from '@talon/kit/conversations';
import { InvalidArgument, TalonError } from '@talon/kit/errors';
import type { ConversationOp } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import type { Principal } from './auth.ts';
import { sendJson } from './guard.ts';

/** Thread ids as memory stores them. */
const THREAD_ID = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,199}$/;
const CHANNEL = /^[a-z][a-z0-9_-]{0,31}$/;
const CURSOR = /^[A-Za-z0-9_-]{1,200}$/;
export const DEFAULT_CHANNEL = 'api';

export type ConversationRoute =
  { kind: 'list' } | { kind: 'conversation'; threadId: string } | { kind: 'messages'; threadId: string } | { kind: 'memory' };

/** The route a path names (undefined: not ours). Pure; throws InvalidArgument for a malformed id. */
export function conversationRoute(path: string): ConversationRoute | undefined {
  if (path === '/v1/conversations' || path === '/v1/conversations/') return { kind: 'list' };
  if (path === '/v1/memory') return { kind: 'memory' };
  const m = /^\/v1\/conversations\/([^/]+)(\/messages)?$/.exec(path);
  if (!m) return undefined;
  let threadId: string;
  try {
    threadId = decodeURIComponent(m[1]!);
  } catch {
    throw new InvalidArgument('the conversation id is not valid percent-encoding');
  }
  if (!THREAD_ID.test(threadId)) {
    throw new InvalidArgument('a conversation id is 1-200 characters of letters, digits and :@._+- starting with a letter or digit');
  }
  return m[2] ? { kind: 'messages', threadId } : { kind: 'conversation', threadId };
}

/** The query parameters of a request. Pure; throws InvalidArgument. */
export function pageParams(url: URL, maxLimit: number): { limit: number; before: string; channel: string | undefined } {
  const raw = url.searchParams.get('limit');
  if (raw !== null && !/^\d{1,9}$/.test(raw)) throw new InvalidArgument('limit must be a positive integer');
  const before = url.searchParams.get('before') ?? '';
  if (before !== '' && !CURSOR.test(before)) throw new InvalidArgument('before must be the nextBefore of a previous page');
  const channel = url.searchParams.get('channel') ?? undefined;
  if (channel !== undefined && !CHANNEL.test(channel))
    throw new InvalidArgument('channel must be a channel name such as api, web or telegram');
  return { limit: raw === null ? 0 : Math.min(Math.max(Number(raw), 1), maxLimit), before, channel };
}

export type Ask = <K extends ConversationOp>(op: K, req: ConversationRequests[K]) => Promise<ConversationResults[K]>;

export class ConversationsApi {
  private readonly ask: Ask;

  /** Asks the orchestrators over NATS (tests pass their own `ask`). */
  constructor(via: NatsConnection | Ask) {
    this.ask = typeof via === 'function' ? via : (op, req) => askConversations(via, op, req);
  }

  /** Handles the routes above for principal `p`; false when the path is not one of them. */
  async route(req: IncomingMessage, res: ServerResponse, url: URL, p: Principal): Promise<boolean> {
    const route = conversationRoute(url.pathname);
    if (!route) return false;
    const method = req.method ?? 'GET';
    const only = (want: 'GET' | 'DELETE', hint: string) => {
      if (method !== want) throw new TalonError('method_not_allowed', `use ${want} for ${hint}`);
    };
    // Bodies are not read here: none of these requests has one.
    const userId = p.userId;
    switch (route.kind) {
      case 'list': {
        only('GET', '/v1/conversations');
        const q = pageParams(url, 200);
        const r = await this.ask('list', { userId, limit: q.limit, before: q.before, channel: q.channel ?? '' });
        sendJson(res, 200, {
          conversations: r.conversations.map((c) => ({
            id: c.threadId,
            channel: c.channel,
            title: c.title,
            createdAtMs: c.createdAtMs,
            lastActivityAtMs: c.lastActivityMs,
            turns: c.turns,
          })),
          nextBefore: r.nextBefore || null,
        });
        return true;
      }
      case 'messages': {
        only('GET', 'a conversation’s messages');
        const q = pageParams(url, 500);
        const channel = q.channel ?? DEFAULT_CHANNEL;
        const r = await this.ask('messages', {
          conversation: { userId, channel, threadId: route.threadId },
          limit: q.limit,
          before: q.before,
        });
        sendJson(res, 200, {
          conversation: { id: route.threadId, channel },
          messages: r.messages.map((m) => ({ id: m.id, role: m.role, content: m.content, createdAtMs: m.createdAtMs })),
          nextBefore: r.nextBefore || null,
        });
        return true;
      }
      case 'conversation': {
        only('DELETE', `/v1/conversations/{id} (its messages: GET /v1/conversations/{id}/messages)`);
        const channel = pageParams(url, 1).channel ?? DEFAULT_CHANNEL;
        const r = await this.ask('delete', { conversation: { userId, channel, threadId: route.threadId } });
        sendJson(res, 200, { deleted: { id: route.threadId, channel, turns: r.turns, chunks: r.chunks, documents: r.documents } });
        return true;
      }
      case 'memory': {
        only('DELETE', '/v1/memory');
        const r = await this.ask('forget', { userId });
        sendJson(res, 200, { deleted: { conversations: r.conversations, turns: r.turns, chunks: r.chunks, documents: r.documents } });
        return true;
      }
    }
  }
}
