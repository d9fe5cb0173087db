// The agent loop of one turn: call the model; while it asks for tools, run them
// and call it again with their output. Bounded in steps (model calls) and in
// time (a deadline for the whole loop; each tool call gets what is left, capped).
// The last permitted step declares the tools with tool_choice "none", so the
// model answers in text. Tool output goes back as a `tool` message whose content
// is an <untrusted source="tool"> block: data, never instructions.
import type { LlmMessage, LlmRequest, LlmResult, ToolCall } from './llm/types.ts';
import type { ToolContext, ToolRegistry } from './tools/registry.ts';
import { untrustedBlock } from './untrusted.ts';

export interface CompletionClient {
  complete(req: Omit<LlmRequest, 'model'>, onDelta?: (delta: string) => void, signal?: AbortSignal): Promise<LlmResult>;
}

export interface ToolLoopLimits {
  /** Most model calls in one turn (1 = no tool round trips). */
  maxSteps: number;
  /** Budget for the whole loop; past it the next call is the final, text-only one. */
  timeoutMs: number;
  /** Upper bound for one tool call. */
  toolTimeoutMs: number;
  /** Most tool calls executed per model step (extra calls are answered with an error). */
  maxCallsPerStep: number;
  /** Tool output beyond this many characters is cut (the model is told). */
  maxToolOutputChars: number;
}

export interface ToolLoopInput {
  llm: CompletionClient;
  tools: ToolRegistry;
  messages: LlmMessage[];
  context: Omit<ToolContext, 'signal' | 'callIndex'>;
  limits: ToolLoopLimits;
  stream: boolean;
  temperature?: number;
  maxTokens?: number;
  onDelta?: (delta: string) => void;
  /** Observability hook per executed tool call. */
  onToolCall?: (info: { name: string; ok: boolean; ms: number; step: number }) => void;
  now?: () => number;
}

export interface ToolLoopResult extends LlmResult {
  steps: number;
  toolCallsRun: number;
  /** The messages as sent on the final step (tests inspect them). */
  messages: LlmMessage[];
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n[output truncated: ${text.length - max} more characters]`;
}

export async function runToolLoop(input: ToolLoopInput): Promise<ToolLoopResult> {
  const now = input.now ?? Date.now;
  const { limits } = input;
  const deadline = now() + limits.timeoutMs;
  const messages = [...input.messages];
  const specs = input.tools.specs();
  const usage = { promptTokens: 0, completionTokens: 0, totalTokens: 0 };
  let text = '';
  let callIndex = 0;
  let toolCallsRun = 0;
  // Text of several steps is joined like it was streamed: a blank line between non-empty parts.
  let needsSeparator = false;
  const onDelta = input.onDelta
    ? (d: string) => {
        if (d === '') return;
        if (needsSeparator) {
          input.onDelta!('\n\n');
          needsSeparator = false;
        }
        input.onDelta!(d);
      }
    : undefined;

  for (let step = 1; ; step++) {
    const final = specs.length === 0 || step >= limits.maxSteps || now() >= deadline;
    const res = await input.llm.complete(
      {
        messages,
        stream: input.stream,
        ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
        ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
        ...(specs.length > 0 ? { tools: specs, toolChoice: final ? ('none' as const) : ('auto' as const) } : {}),
      },
      onDelta,
    );
    usage.promptTokens += res.usage.promptTokens;
    usage.completionTokens += res.usage.completionTokens;
    usage.totalTokens += res.usage.totalTokens;
    if (res.content !== '') {
      text = text === '' ? res.content : `${text}\n\n${res.content}`;
      if (onDelta) needsSeparator = true;
    }
    if (final || res.toolCalls.length === 0) {
      return {
        ...res,
        content: text,
        // A model that ignored tool_choice "none" still ends the turn here.
        finishReason: res.toolCalls.length > 0 ? 'stop' : res.finishReason,
        toolCalls: [],
        usage,
        steps: step,
        toolCallsRun,
        messages,
      };
    }
    const calls: ToolCall[] = res.toolCalls.map((c, i) => ({ ...c, id: c.id || `call_${step}_${i}` }));
    messages.push({ role: 'assistant', content: res.content, toolCalls: calls });
    for (const [i, call] of calls.entries()) {
      let output: string;
      let ok = false;
      const t0 = now();
      const left = deadline - t0;
      if (i >= limits.maxCallsPerStep) output = `error: at most ${limits.maxCallsPerStep} tool calls per step; this one was not run`;
      else if (left <= 0) output = 'error: the time budget for tools in this turn is used up; this call was not run';
      else {
        const r = await input.tools.invoke(
          call.name,
          call.arguments,
          { ...input.context, callIndex: callIndex++ },
          Math.min(limits.toolTimeoutMs, left),
        );
        output = r.output;
        ok = r.ok;
        toolCallsRun += 1;
        input.onToolCall?.({ name: call.name, ok, ms: now() - t0, step });
      }
      messages.push({
        role: 'tool',
        toolCallId: call.id,
        name: call.name,
        content: untrustedBlock('tool', cut(output, limits.maxToolOutputChars), { tool: call.name, status: ok ? 'ok' : 'error' }),
      });
    }
  }
}
