export interface LlmMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface LlmRequest {
  model: string;
  messages: LlmMessage[];
  stream: boolean;
  temperature?: number;
  maxTokens?: number;
}

export interface LlmResult {
  content: string;
  finishReason: string;
  model: string;
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
}

/** One provider's wire format: pure builders and parsers, no I/O. */
export interface ProviderFormat {
  readonly name: string;
  endpoint(baseUrl: string): string;
  headers(apiKeyPlaceholder: string | undefined): Record<string, string>;
  body(req: LlmRequest): unknown;
  parseResponse(json: unknown, fallbackModel: string): LlmResult;
  /** Applies one streamed event; returns the text delta (possibly empty). */
  applyStreamEvent(ev: { event: string; data: string }, acc: StreamAccumulator): string;
}

export class StreamAccumulator {
  content = '';
  finishReason = '';
  model = '';
  promptTokens = 0;
  completionTokens = 0;
  done = false;

  result(fallbackModel: string): LlmResult {
    return {
      content: this.content,
      finishReason: this.finishReason || 'stop',
      model: this.model || fallbackModel,
      usage: {
        promptTokens: this.promptTokens,
        completionTokens: this.completionTokens,
        totalTokens: this.promptTokens + this.completionTokens,
      },
    };
  }
}

export class LlmProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LlmProtocolError';
  }
}
