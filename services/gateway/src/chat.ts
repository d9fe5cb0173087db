// OpenAI Chat Completions request validation and response shapes. Pure.
import { InvalidArgument } from '@talon/kit/errors';
import { Role, type ChatMessage, type ClientTools, type ImagePart, type OutboundMessage } from '@talon/proto';
import {
  DEFAULT_MAX_IMAGE_BYTES,
  invalidField,
  parseClientTools,
  parseImagePart,
  parseToolCallId,
  parseToolCalls,
} from './openai-parts.ts';

export interface ChatRequest {
  messages: ChatMessage[];
  stream: boolean;
  model: string;
  temperature?: number;
  maxTokens?: number;
  conversationId: string;
  /** stream_options.include_usage: a last chunk carries the usage (OpenAI's streaming contract). */
  includeUsage: boolean;
  /** The client's own function tools and tool_choice; undefined: none offered. */
  clientTools?: ClientTools;
  /** How many image parts the messages carry (the model must accept images). */
  images: number;
}

const ROLES: Record<string, Role> = {
  system: Role.ROLE_SYSTEM,
  developer: Role.ROLE_SYSTEM,
  user: Role.ROLE_USER,
  assistant: Role.ROLE_ASSISTANT,
  tool: Role.ROLE_TOOL,
};

export const CONVERSATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A message's text, and its image parts (user messages only, as OpenAI has it). */
function contentOf(content: unknown, i: number, role: Role, maxImageBytes: number): { text: string; images: ImagePart[] } {
  if (typeof content === 'string') return { text: content, images: [] };
  if (content === null || content === undefined) return { text: '', images: [] };
  if (!Array.isArray(content)) throw new InvalidArgument(`messages[${i}].content must be a string or an array of content parts`);
  const texts: string[] = [];
  const images: ImagePart[] = [];
  content.forEach((part: unknown, j) => {
    const p = part as { type?: unknown; text?: unknown; image_url?: unknown };
    if (p?.type === 'text' && typeof p.text === 'string') texts.push(p.text);
    else if (p?.type === 'image_url' && role === Role.ROLE_USER)
      images.push(parseImagePart(p.image_url, `messages[${i}].content[${j}].image_url`, maxImageBytes));
    else
      throw invalidField(
        `messages[${i}].content[${j}]`,
        'only text parts, and image_url parts in user messages, are supported',
        'invalid_argument',
      );
  });
  return { text: texts.join(''), images };
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
    /** Largest decoded data: image (GATEWAY_API_MAX_IMAGE_BYTES). */
    maxImageBytes?: number;
  },
): ChatRequest {
  const maxImageBytes = opts.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  let images = 0;
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
    const c = contentOf(m.content, i, role, maxImageBytes);
    images += c.images.length;
    const toolCalls = role === Role.ROLE_ASSISTANT ? parseToolCalls(m.tool_calls, i) : [];
    const toolCallId = role === Role.ROLE_TOOL ? parseToolCallId(m.tool_call_id, i) : '';
    const parts =
      toolCalls.length > 0 || toolCallId !== '' || c.images.length > 0 ? { parts: { toolCalls, toolCallId, images: c.images } } : {};
    return { role, content: c.text, name, ...parts };
  });
  const clientTools = parseClientTools(b.tools, b.tool_choice);
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
    ...(clientTools ? { clientTools } : {}),
    images,
  };
}

function usageOf(out: OutboundMessage) {
  return {
    prompt_tokens: out.usage?.promptTokens ?? 0,
    completion_tokens: out.usage?.completionTokens ?? 0,
    total_tokens: out.usage?.totalTokens ?? 0,
  };
}

/** The calls of the client's tools the model asked for, in OpenAI's shape. */
export function wireToolCalls(out: OutboundMessage) {
  return (out.clientToolCalls?.calls ?? []).map((c) => ({
    id: c.id,
    type: 'function' as const,
    function: { name: c.name, arguments: c.arguments },
  }));
}

function messageOf(out: OutboundMessage) {
  const calls = wireToolCalls(out);
  if (calls.length === 0) return { role: 'assistant', content: out.content };
  return { role: 'assistant', content: out.content === '' ? null : out.content, tool_calls: calls };
}

/**
 * The stream chunks of a reply's tool calls (OpenAI's streaming shape): per call, one chunk
 * with index, id, type and name, then its arguments in fragments.
 */
export function toolCallDeltas(out: OutboundMessage, fragmentChars = 256) {
  return wireToolCalls(out).flatMap((c, index) => {
    const head = { tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] };
    const rest: Array<{ tool_calls: Array<{ index: number; function: { arguments: string } }> }> = [];
    for (let k = 0; k < c.function.arguments.length; k += fragmentChars)
      rest.push({ tool_calls: [{ index, function: { arguments: c.function.arguments.slice(k, k + fragmentChars) } }] });
    return [head, ...rest];
  });
}

export function completionBody(id: string, createdSec: number, out: OutboundMessage) {
  return {
    id,
    object: 'chat.completion',
    created: createdSec,
    model: out.model,
    choices: [{ index: 0, message: messageOf(out), finish_reason: out.finishReason || 'stop', logprobs: null }],
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
  delta: { role?: string; content?: string } | ReturnType<typeof toolCallDeltas>[number],
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
