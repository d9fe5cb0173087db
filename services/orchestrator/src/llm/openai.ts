// OpenAI Chat Completions wire format (also spoken by Ollama, vLLM, llama.cpp, LM Studio...).
import { LlmProtocolError, type LlmRequest, type LlmResult, type ProviderFormat, type StreamAccumulator } from './types.ts';

interface ChatCompletion {
  model?: string;
  choices?: Array<{ message?: { content?: string | null }; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
}

interface ChatChunk {
  model?: string;
  choices?: Array<{ delta?: { content?: string | null }; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
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
    return {
      model: req.model,
      messages: req.messages,
      stream: req.stream,
      ...(req.stream ? { stream_options: { include_usage: true } } : {}),
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
      ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
    };
  },
  parseResponse(json: unknown, fallbackModel: string): LlmResult {
    const c = json as ChatCompletion;
    const choice = c?.choices?.[0];
    if (!choice || typeof choice.message?.content !== 'string') throw new LlmProtocolError('response has no choices[0].message.content');
    const p = c.usage?.prompt_tokens ?? 0;
    const o = c.usage?.completion_tokens ?? 0;
    return {
      content: choice.message.content,
      finishReason: choice.finish_reason ?? 'stop',
      model: c.model ?? fallbackModel,
      usage: { promptTokens: p, completionTokens: o, totalTokens: c.usage?.total_tokens ?? p + o },
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
    const delta = choice?.delta?.content ?? '';
    acc.content += delta;
    return delta;
  },
};
