// Calls the configured LLM provider through egress. The API key is never here:
// the request carries the placeholder {{secret:<name>}} and egress fills it in.
import { scrub } from '@talon/kit/log';
import { TalonError } from '@talon/kit/errors';
import type { EgressClient } from '@talon/kit/egress';
import { llmDuration, llmOutcome, llmRequests, llmTokens } from '../metrics.ts';
import { SseParser } from './sse.ts';
import { StreamAccumulator, type LlmRequest, type LlmResult, type ProviderFormat } from './types.ts';

export class LlmHttpError extends TalonError {
  readonly status: number;
  readonly retryable: boolean;
  constructor(status: number, detail: string) {
    super('llm_error', `the LLM provider answered HTTP ${status}${detail ? `: ${detail}` : ''}`);
    this.name = 'LlmHttpError';
    this.status = status;
    this.retryable = status === 408 || status === 409 || status === 429 || status >= 500;
  }
}

export interface LlmClientOptions {
  egress: EgressClient;
  format: ProviderFormat;
  baseUrl: string;
  model: string;
  /** The provider's name in metrics and logs (a configured label); default the wire format. */
  label?: string;
  /** Vault secret holding the API key; undefined for servers that need none (local Ollama). */
  apiKeySecret: string | undefined;
  timeoutMs: number;
}

function errorDetail(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: string } | string; message?: string };
    const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message);
    if (m) return scrub(m).slice(0, 300);
  } catch {
    /* not JSON */
  }
  return scrub(text).slice(0, 300);
}

export class LlmClient {
  private readonly apiKeySecret: LlmClientOptions['apiKeySecret'];
  private readonly baseUrl: LlmClientOptions['baseUrl'];
  private readonly egress: LlmClientOptions['egress'];
  private readonly format: LlmClientOptions['format'];
  readonly model: LlmClientOptions['model'];
  readonly label: string;
  private readonly timeoutMs: LlmClientOptions['timeoutMs'];
  constructor(opts: LlmClientOptions) {
    this.apiKeySecret = opts.apiKeySecret;
    this.baseUrl = opts.baseUrl;
    this.egress = opts.egress;
    this.format = opts.format;
    this.model = opts.model;
    this.label = opts.label ?? opts.format.name;
    this.timeoutMs = opts.timeoutMs;
  }

  /** One LLM call, counted and timed by provider and configured model (bounded labels). */
  async complete(req: Omit<LlmRequest, 'model'>, onDelta?: (delta: string) => void, signal?: AbortSignal): Promise<LlmResult> {
    const labels = { provider: this.label, model: this.model };
    const timer = llmDuration.startTimer();
    try {
      const result = await this.call(req, onDelta, signal);
      llmRequests.add({ ...labels, outcome: 'ok' });
      llmTokens.add({ ...labels, direction: 'input' }, result.usage.promptTokens);
      llmTokens.add({ ...labels, direction: 'output' }, result.usage.completionTokens);
      return result;
    } catch (err) {
      llmRequests.add({ ...labels, outcome: llmOutcome(err) });
      throw err;
    } finally {
      timer(labels);
    }
  }

  private async call(req: Omit<LlmRequest, 'model'>, onDelta?: (delta: string) => void, signal?: AbortSignal): Promise<LlmResult> {
    const full: LlmRequest = { ...req, model: this.model };
    const placeholder = this.apiKeySecret ? `{{secret:${this.apiKeySecret}}}` : undefined;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const res = await this.egress.request({
      method: 'POST',
      url: this.format.endpoint(this.baseUrl),
      headers: { ...this.format.headers(placeholder), ...(req.stream ? { accept: 'text/event-stream' } : {}) },
      body: JSON.stringify(this.format.body(full)),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      headersTimeoutMs: this.timeoutMs,
      bodyTimeoutMs: this.timeoutMs,
      ...(req.user ? { user: req.user } : {}),
    });
    if (res.status >= 400) {
      const text = await res.body.text().catch(() => '');
      throw new LlmHttpError(res.status, errorDetail(text));
    }
    const ctype = String(res.headers['content-type'] ?? '');
    if (!req.stream || !ctype.includes('text/event-stream')) {
      const text = await res.body.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new TalonError('llm_error', 'the LLM provider returned a response that is not JSON');
      }
      const result = this.format.parseResponse(json, this.model);
      if (req.stream && onDelta && result.content) onDelta(result.content);
      return result;
    }
    const parser = new SseParser();
    const acc = new StreamAccumulator();
    const decoder = new TextDecoder();
    const apply = (events: ReturnType<SseParser['feed']>) => {
      for (const ev of events) {
        const delta = this.format.applyStreamEvent(ev, acc);
        if (delta && onDelta) onDelta(delta);
      }
    };
    for await (const chunk of res.body) {
      apply(parser.feed(decoder.decode(chunk as Buffer, { stream: true })));
      if (acc.done) break;
    }
    apply(parser.end());
    return acc.result(this.model);
  }
}
