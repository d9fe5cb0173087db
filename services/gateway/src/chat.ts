// OpenAI Chat Completions request validation and response shapes. Pure.
import { InvalidArgument } from '@talon/kit/errors';
import { Role, type ChatMessage, type OutboundMessage } from '@talon/proto';

export interface ChatRequest {
  messages: ChatMessage[];
  stream: boolean;
  model: string;
  temperature?: number;
  maxTokens?: number;
  conversationId: string;
  /** stream_options.include_usage: a last chunk carries the usage (OpenAI's streaming contract). */
  includeUsage: boolean;
}

const ROLES: Record<string, Role> = {
  system: Role.ROLE_SYSTEM,
  developer: Role.ROLE_SYSTEM,
  user: Role.ROLE_USER,
  assistant: Role.ROLE_ASSISTANT,
  tool: Role.ROLE_TOOL,
};

export const CONVERSATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function contentText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  if (Array.isArray(content)) {
    return content
      .map((part: unknown, j) => {
        const p = part as { type?: unknown; text?: unknown };
        if (p?.type === 'text' && typeof p.text === 'string') return p.text;
        throw new InvalidArgument(`messages[${i}].content[${j}]: only text parts are supported`);
      })
      .join('');
  }
  throw new InvalidArgument(`messages[${i}].content must be a string or an array of text parts`);
}

export function parseChatRequest(
  body: unknown,
  opts: {
    maxMessages: number;
    conversationHeader?: string;
    /**
     * The conversation of a request that names none. The OpenAI API is stateless: each such
     * request is its own conversation (a shared `default` mixed unrelated clients' context).
     */
    unnamedConversation: () => string;
  },
): ChatRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidArgument('the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.messages)) throw new InvalidArgument('messages is required and must be an array');
  if (b.messages.length === 0) throw new InvalidArgument('messages must not be empty');
  if (b.messages.length > opts.maxMessages) throw new InvalidArgument(`at most ${opts.maxMessages} messages per request`);
  const messages = b.messages.map((raw: unknown, i): ChatMessage => {
    if (typeof raw !== 'object' || raw === null) throw new InvalidArgument(`messages[${i}] must be an object`);
    const m = raw as Record<string, unknown>;
    const role = typeof m.role === 'string' ? ROLES[m.role] : undefined;
    if (role === undefined) throw new InvalidArgument(`messages[${i}].role must be one of system, developer, user, assistant, tool`);
    const name = typeof m.name === 'string' ? m.name.slice(0, 64) : '';
    return { role, content: contentText(m.content, i), name };
  });
  if (!messages.some((m) => m.role === Role.ROLE_USER)) throw new InvalidArgument('messages must contain at least one user message');
  if (b.stream !== undefined && typeof b.stream !== 'boolean') throw new InvalidArgument('stream must be a boolean');
  if (b.model !== undefined && typeof b.model !== 'string') throw new InvalidArgument('model must be a string');
  let temperature: number | undefined;
  if (b.temperature !== undefined && b.temperature !== null) {
    if (typeof b.temperature !== 'number' || !(b.temperature >= 0 && b.temperature <= 2))
      throw new InvalidArgument('temperature must be a number from 0 to 2');
    temperature = b.temperature;
  }
  let maxTokens: number | undefined;
  const mt = b.max_completion_tokens ?? b.max_tokens;
  if (mt !== undefined && mt !== null) {
    if (typeof mt !== 'number' || !Number.isInteger(mt) || mt < 1 || mt > 1_000_000)
      throw new InvalidArgument('max_tokens must be a positive integer');
    maxTokens = mt;
  }
  const streamOptions = b.stream_options as Record<string, unknown> | null | undefined;
  const meta = b.metadata as Record<string, unknown> | undefined;
  const fromMeta = meta && typeof meta === 'object' && typeof meta.conversation_id === 'string' ? meta.conversation_id : undefined;
  const conversationId = opts.conversationHeader ?? fromMeta ?? opts.unnamedConversation();
  if (!CONVERSATION_ID.test(conversationId)) {
    throw new InvalidArgument(
      'conversation id (x-talon-conversation header or metadata.conversation_id) must be 1-128 characters of letters, digits and ._:-',
    );
  }
  return {
    messages,
    stream: b.stream === true,
    includeUsage: b.stream === true && streamOptions !== null && typeof streamOptions === 'object' && streamOptions.include_usage === true,
    model: typeof b.model === 'string' ? b.model : '',
    ...(temperature !== undefined ? { temperature } : {}),
    ...(maxTokens !== undefined ? { maxTokens } : {}),
    conversationId,
  };
}

function usageOf(out: OutboundMessage) {
  return {
    prompt_tokens: out.usage?.promptTokens ?? 0,
    completion_tokens: out.usage?.completionTokens ?? 0,
    total_tokens: out.usage?.totalTokens ?? 0,
  };
}

export function completionBody(id: string, createdSec: number, out: OutboundMessage) {
  return {
    id,
    object: 'chat.completion',
    created: createdSec,
    model: out.model,
    choices: [
      { index: 0, message: { role: 'assistant', content: out.content }, finish_reason: out.finishReason || 'stop', logprobs: null },
    ],
    usage: usageOf(out),
  };
}

/** The last chunk of a stream asked for with stream_options.include_usage: no choices, the usage. */
export function usageChunkBody(id: string, createdSec: number, model: string, out: OutboundMessage) {
  return {
    id,
    object: 'chat.completion.chunk',
    created: createdSec,
    model,
    choices: [],
    usage: usageOf(out),
  };
}

export function chunkBody(
  id: string,
  createdSec: number,
  model: string,
  delta: { role?: string; content?: string },
  finishReason: string | null,
) {
  return {
    id,
    object: 'chat.completion.chunk',
    created: createdSec,
    model,
    choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }],
  };
}
