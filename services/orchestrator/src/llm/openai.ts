// OpenAI Chat Completions wire format (also spoken by Ollama, vLLM, llama.cpp, LM Studio...),
// including function tools (`tools` / `tool_calls` / role `tool`).
import {
  LlmProtocolError,
  type LlmMessage,
  type LlmRequest,
  type LlmResult,
  type ProviderFormat,
  type StreamAccumulator,
  type ToolCall,
  type ToolChoice,
} from './types.ts';

interface WireToolCall {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

interface ChatCompletion {
  model?: string;
  choices?: Array<{ message?: { content?: string | null; tool_calls?: WireToolCall[] }; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
}

interface ChatChunk {
  model?: string;
  choices?: Array<{ delta?: { content?: string | null; tool_calls?: WireToolCall[] }; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
}

function wireMessage(m: LlmMessage): Record<string, unknown> {
  switch (m.role) {
    case 'assistant':
      return m.toolCalls && m.toolCalls.length > 0
        ? {
            role: 'assistant',
            content: m.content === '' ? null : m.content,
            tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })),
          }
        : { role: 'assistant', content: m.content };
    case 'tool':
      return { role: 'tool', tool_call_id: m.toolCallId, content: m.content };
    case 'user':
      return m.images && m.images.length > 0
        ? {
            role: 'user',
            content: [
              ...(m.content !== '' ? [{ type: 'text', text: m.content }] : []),
              ...m.images.map((i) => ({ type: 'image_url', image_url: { url: i.url, ...(i.detail ? { detail: i.detail } : {}) } })),
            ],
          }
        : { role: 'user', content: m.content };
    default:
      return { role: m.role, content: m.content };
  }
}

/** OpenAI's tool_choice on the wire. */
export function wireToolChoice(c: ToolChoice | undefined): unknown {
  if (c === undefined) return 'auto';
  return typeof c === 'string' ? c : { type: 'function', function: { name: c.name } };
}

function parseToolCalls(calls: WireToolCall[] | undefined): ToolCall[] {
  if (!Array.isArray(calls)) return [];
  return calls
    .filter((c) => c?.function?.name)
    .map((c, i) => ({ id: c.id || `call_${i}`, name: c.function!.name!, arguments: c.function?.arguments || '{}' }));
}

export const openaiFormat: ProviderFormat = {
  name: 'openai',
  endpoint: (base) => `${base.replace(/\/+$/, '')}/chat/completions`,
  headers: (key) => ({
    'content-type': 'application/json',
    accept: 'application/json',
    ...(key ? { authorization: `Bearer ${key}` } : {}),
  }),
  body(req: LlmRequest) {
    const tools = req.tools ?? [];
    return {
      model: req.model,
      messages: req.messages.map(wireMessage),
      stream: req.stream,
      ...(req.stream ? { stream_options: { include_usage: true } } : {}),
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
      ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
      ...(tools.length > 0
        ? {
            tools: tools.map((t) => ({
              type: 'function',
              function: { name: t.name, description: t.description, parameters: t.parameters },
            })),
            tool_choice: wireToolChoice(req.toolChoice),
          }
        : {}),
    };
  },
  parseResponse(json: unknown, fallbackModel: string): LlmResult {
    const c = json as ChatCompletion;
    const choice = c?.choices?.[0];
    const content = choice?.message?.content;
    const toolCalls = parseToolCalls(choice?.message?.tool_calls);
    if (!choice || (typeof content !== 'string' && !(content === null && toolCalls.length > 0))) {
      throw new LlmProtocolError('response has no choices[0].message.content');
    }
    const p = c.usage?.prompt_tokens ?? 0;
    const o = c.usage?.completion_tokens ?? 0;
    return {
      content: content ?? '',
      finishReason: choice.finish_reason ?? 'stop',
      model: c.model ?? fallbackModel,
      usage: { promptTokens: p, completionTokens: o, totalTokens: c.usage?.total_tokens ?? p + o },
      toolCalls,
    };
  },
  applyStreamEvent(ev, acc: StreamAccumulator): string {
    if (ev.data === '[DONE]') {
      acc.done = true;
      return '';
    }
    let chunk: ChatChunk;
    try {
      chunk = JSON.parse(ev.data) as ChatChunk;
    } catch {
      throw new LlmProtocolError('stream chunk is not JSON');
    }
    if (chunk.model) acc.model = chunk.model;
    if (chunk.usage) {
      acc.promptTokens = chunk.usage.prompt_tokens ?? acc.promptTokens;
      acc.completionTokens = chunk.usage.completion_tokens ?? acc.completionTokens;
    }
    const choice = chunk.choices?.[0];
    if (choice?.finish_reason) acc.finishReason = choice.finish_reason;
    // Tool calls arrive as fragments keyed by index: id and name once, arguments in pieces.
    for (const [pos, f] of (choice?.delta?.tool_calls ?? []).entries()) {
      const call = acc.toolCall(f.index ?? pos);
      if (f.id) call.id = f.id;
      if (f.function?.name) call.name += f.function.name;
      if (f.function?.arguments) call.arguments += f.function.arguments;
    }
    const delta = choice?.delta?.content ?? '';
    acc.content += delta;
    return delta;
  },
};
