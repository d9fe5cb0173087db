/** A tool invocation requested by the model; `arguments` is the raw JSON text. */
export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** A tool offered to the model (OpenAI `tools[].function`, Anthropic `tools[]`). */
export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: Record<string, unknown>;
}

/** An image of a user message: a data: URL (base64) or an https: URL the provider fetches. */
export interface LlmImage {
  url: string;
  /** OpenAI's detail (auto, low, high); '' when not given. */
  detail: string;
}

/** OpenAI's tool_choice: a function name forces that tool. */
export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

export type LlmMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string; images?: LlmImage[] }
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] }
  /** A tool's output; content is already wrapped as untrusted data. */
  | { role: 'tool'; toolCallId: string; name: string; content: string };

export interface LlmRequest {
  model: string;
  messages: LlmMessage[];
  stream: boolean;
  temperature?: number;
  maxTokens?: number;
  tools?: ToolSpec[];
  /** `none` keeps tools declared (history may reference them) but asks for a text answer. */
  toolChoice?: ToolChoice;
  /** The Talon user the call is made for: told to egress for its record (x-talon-user), never sent to the provider. */
  user?: string;
}

export interface LlmResult {
  content: string;
  finishReason: string;
  model: string;
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  toolCalls: ToolCall[];
  /** Label of the provider that answered (a model may fail over to its next provider). */
  provider?: string;
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
  /** Tool calls assembled from streamed fragments, by the provider's block/call index. */
  readonly toolCalls = new Map<number, ToolCall>();

  toolCall(index: number): ToolCall {
    let c = this.toolCalls.get(index);
    if (!c) {
      c = { id: '', name: '', arguments: '' };
      this.toolCalls.set(index, c);
    }
    return c;
  }

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
      toolCalls: [...this.toolCalls.entries()]
        .sort((a, b) => a[0] - b[0])
        .filter(([, c]) => c.name !== '')
        .map(([i, c]) => ({ id: c.id || `call_${i}`, name: c.name, arguments: c.arguments || '{}' })),
    };
  }
}

export class LlmProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LlmProtocolError';
  }
}
