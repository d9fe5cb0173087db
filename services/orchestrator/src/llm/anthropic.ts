// Anthropic Messages API wire format, including tools (`tool_use` / `tool_result` blocks).
import {
  LlmProtocolError,
  type LlmImage,
  type LlmMessage,
  type LlmRequest,
  type LlmResult,
  type ProviderFormat,
  type StreamAccumulator,
  type ToolChoice,
} from './types.ts';

type Block =
  | { type: 'text'; text: string }
  | { type: 'image'; source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string } }
  | { type: 'tool_use'; id: string; name: string; input: unknown }
  | { type: 'tool_result'; tool_use_id: string; content: string };

interface MessagesResponse {
  model?: string;
  content?: Array<{ type?: string; text?: string; id?: string; name?: string; input?: unknown }>;
  stop_reason?: string | null;
  usage?: { input_tokens?: number; output_tokens?: number };
}

const STOP: Record<string, string> = { end_turn: 'stop', max_tokens: 'length', stop_sequence: 'stop', tool_use: 'tool_calls' };

function parseArgs(text: string): unknown {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

/** A data: URL becomes a base64 source, an https: URL a url source. */
export function imageBlock(i: LlmImage): Block {
  const m = /^data:(image\/[a-z]+);base64,(.*)$/s.exec(i.url);
  return m
    ? { type: 'image', source: { type: 'base64', media_type: m[1]!, data: m[2]! } }
    : { type: 'image', source: { type: 'url', url: i.url } };
}

/** Anthropic's tool_choice: auto, none, any (OpenAI's required) or one tool. */
export function anthropicToolChoice(c: ToolChoice | undefined): Record<string, string> {
  if (c === undefined || c === 'auto') return { type: 'auto' };
  if (c === 'none') return { type: 'none' };
  if (c === 'required') return { type: 'any' };
  return { type: 'tool', name: c.name };
}

function blocksOf(m: Exclude<LlmMessage, { role: 'system' }>): { role: 'user' | 'assistant'; blocks: Block[] } {
  switch (m.role) {
    case 'user':
      return {
        role: 'user',
        blocks: [
          // Images first: Anthropic's advice, and they read the text that follows them.
          ...(m.images ?? []).map(imageBlock),
          ...(m.content !== '' || !m.images?.length ? [{ type: 'text' as const, text: m.content }] : []),
        ],
      };
    case 'assistant':
      return {
        role: 'assistant',
        blocks: [
          ...(m.content !== '' ? [{ type: 'text' as const, text: m.content }] : []),
          ...(m.toolCalls ?? []).map((c) => ({ type: 'tool_use' as const, id: c.id, name: c.name, input: parseArgs(c.arguments) })),
        ],
      };
    case 'tool':
      // Tool output travels in the user turn as a tool_result block, never as instructions.
      return { role: 'user', blocks: [{ type: 'tool_result', tool_use_id: m.toolCallId, content: m.content }] };
  }
}

/** Anthropic wants alternating roles and all tool results of a step in one user message. */
function wireMessages(messages: readonly LlmMessage[]): Array<{ role: 'user' | 'assistant'; content: string | Block[] }> {
  const out: Array<{ role: 'user' | 'assistant'; blocks: Block[] }> = [];
  for (const m of messages) {
    if (m.role === 'system') continue;
    const b = blocksOf(m);
    if (b.blocks.length === 0) continue;
    const last = out.at(-1);
    if (last && last.role === b.role) last.blocks.push(...b.blocks);
    else out.push(b);
  }
  // A single text block keeps the simple string form.
  return out.map((m) => {
    const only = m.blocks.length === 1 ? m.blocks[0] : undefined;
    return { role: m.role, content: only?.type === 'text' ? only.text : m.blocks };
  });
}

export const anthropicFormat: ProviderFormat = {
  name: 'anthropic',
  endpoint: (base) => `${base.replace(/\/+$/, '')}/messages`,
  headers: (key) => ({
    'content-type': 'application/json',
    accept: 'application/json',
    'anthropic-version': '2023-06-01',
    ...(key ? { 'x-api-key': key } : {}),
  }),
  body(req: LlmRequest) {
    const system = req.messages
      .filter((m) => m.role === 'system')
      .map((m) => m.content)
      .join('\n\n');
    const tools = req.tools ?? [];
    return {
      model: req.model,
      max_tokens: req.maxTokens ?? 1024,
      ...(system ? { system } : {}),
      messages: wireMessages(req.messages),
      stream: req.stream,
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
      ...(tools.length > 0
        ? {
            tools: tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.parameters })),
            tool_choice: anthropicToolChoice(req.toolChoice),
          }
        : {}),
    };
  },
  parseResponse(json: unknown, fallbackModel: string): LlmResult {
    const r = json as MessagesResponse;
    if (!Array.isArray(r?.content)) throw new LlmProtocolError('response has no content array');
    const text = r.content
      .filter((b) => b.type === 'text')
      .map((b) => b.text ?? '')
      .join('');
    const toolCalls = r.content
      .filter((b) => b.type === 'tool_use' && typeof b.name === 'string')
      .map((b, i) => ({ id: b.id || `toolu_${i}`, name: b.name!, arguments: JSON.stringify(b.input ?? {}) }));
    const p = r.usage?.input_tokens ?? 0;
    const o = r.usage?.output_tokens ?? 0;
    return {
      content: text,
      finishReason: STOP[r.stop_reason ?? 'end_turn'] ?? 'stop',
      model: r.model ?? fallbackModel,
      usage: { promptTokens: p, completionTokens: o, totalTokens: p + o },
      toolCalls,
    };
  },
  applyStreamEvent(ev, acc: StreamAccumulator): string {
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(ev.data) as Record<string, unknown>;
    } catch {
      throw new LlmProtocolError('stream event is not JSON');
    }
    const type = (data.type as string | undefined) ?? ev.event;
    switch (type) {
      case 'message_start': {
        const m = data.message as MessagesResponse | undefined;
        if (m?.model) acc.model = m.model;
        acc.promptTokens = m?.usage?.input_tokens ?? acc.promptTokens;
        return '';
      }
      case 'content_block_start': {
        const b = data.content_block as { type?: string; id?: string; name?: string } | undefined;
        if (b?.type === 'tool_use') {
          const call = acc.toolCall(Number(data.index ?? acc.toolCalls.size));
          call.id = b.id ?? '';
          call.name = b.name ?? '';
        }
        return '';
      }
      case 'content_block_delta': {
        const d = data.delta as { type?: string; text?: string; partial_json?: string } | undefined;
        if (d?.type === 'input_json_delta') {
          acc.toolCall(Number(data.index ?? 0)).arguments += d.partial_json ?? '';
          return '';
        }
        const text = d?.type === 'text_delta' ? (d.text ?? '') : '';
        acc.content += text;
        return text;
      }
      case 'message_delta': {
        const d = data.delta as { stop_reason?: string } | undefined;
        if (d?.stop_reason) acc.finishReason = STOP[d.stop_reason] ?? 'stop';
        const u = data.usage as { output_tokens?: number } | undefined;
        if (u?.output_tokens !== undefined) acc.completionTokens = u.output_tokens;
        return '';
      }
      case 'message_stop':
        acc.done = true;
        return '';
      case 'error': {
        const e = data.error as { message?: string } | undefined;
        throw new LlmProtocolError(`provider stream error: ${e?.message ?? 'unknown'}`);
      }
      default:
        return '';
    }
  },
};
