// Anthropic Messages API wire format.
import { LlmProtocolError, type LlmRequest, type LlmResult, type ProviderFormat, type StreamAccumulator } from './types.ts';

interface MessagesResponse {
  model?: string;
  content?: Array<{ type?: string; text?: string }>;
  stop_reason?: string | null;
  usage?: { input_tokens?: number; output_tokens?: number };
}

const STOP: Record<string, string> = { end_turn: 'stop', max_tokens: 'length', stop_sequence: 'stop', tool_use: 'tool_calls' };

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
    const messages = req.messages.filter((m) => m.role !== 'system').map((m) => ({ role: m.role, content: m.content }));
    return {
      model: req.model,
      max_tokens: req.maxTokens ?? 1024,
      ...(system ? { system } : {}),
      messages,
      stream: req.stream,
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
    };
  },
  parseResponse(json: unknown, fallbackModel: string): LlmResult {
    const r = json as MessagesResponse;
    if (!Array.isArray(r?.content)) throw new LlmProtocolError('response has no content array');
    const text = r.content
      .filter((b) => b.type === 'text')
      .map((b) => b.text ?? '')
      .join('');
    const p = r.usage?.input_tokens ?? 0;
    const o = r.usage?.output_tokens ?? 0;
    return {
      content: text,
      finishReason: STOP[r.stop_reason ?? 'end_turn'] ?? 'stop',
      model: r.model ?? fallbackModel,
      usage: { promptTokens: p, completionTokens: o, totalTokens: p + o },
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
      case 'content_block_delta': {
        const d = data.delta as { type?: string; text?: string } | undefined;
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
