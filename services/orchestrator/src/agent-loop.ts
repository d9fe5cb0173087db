// The agent loop of one turn: call the model; while it asks for tools, run them
// and call it again with their output. Bounded in steps (model calls) and in
// time (a deadline for the whole loop; each tool call gets what is left, capped).
// The last permitted step declares the tools with tool_choice "none", so the
// model answers in text. Tool output goes back as a `tool` message whose content
// is an <untrusted source="tool"> block: data, never instructions.
//
// The loop can stop part-way and continue later: a gate consulted before each
// call may answer "park" (the call waits for the user's approval). The loop then
// returns its progress — messages, counters, text so far — which is plain data;
// continuing it with that progress runs the parked call first (the gate is asked
// again and now knows the decision) and goes on as if nothing happened. Time spent
// parked does not count against the time budget.
import type { LlmMessage, LlmRequest, LlmResult, ToolCall, ToolChoice, ToolSpec } from './llm/types.ts';
import type { Tool, ToolContext, ToolOutcome, ToolRegistry } from './tools/registry.ts';
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

/** Where a loop stands; serialisable (turn-state.ts), so a parked loop can continue in another process. */
export interface LoopProgress {
  messages: LlmMessage[];
  /** Model calls made so far. */
  steps: number;
  /** Index the next tool call gets (every call the model asks for gets one, run or not). */
  callIndex: number;
  toolCallsRun: number;
  /** Assistant text of all steps so far, joined by blank lines. */
  text: string;
  usage: { promptTokens: number; completionTokens: number; totalTokens: number };
  /** Loop time spent before this run. */
  elapsedMs: number;
  model: string;
  finishReason: string;
}

/** A call about to run: its tool exists and its arguments passed the schema. */
export interface GateInput {
  call: ToolCall;
  tool: Tool;
  args: Record<string, unknown>;
  callIndex: number;
  step: number;
}

/** What an approval on a call decided, for records and audit. */
export interface ApprovalNote {
  approvalId: string;
  /** approved, denied or expired. */
  approval: string;
  decidedBy: string;
}

export type GateDecision =
  | { kind: 'run'; userApproved: boolean; note?: ApprovalNote }
  /** Do not run: answer the model with this error instead (denied, expired...). */
  | { kind: 'answer'; code: string; output: string; note?: ApprovalNote }
  /** Stop the loop here; the call runs when the loop continues. `data` is returned as is. */
  | { kind: 'park'; data: unknown };

export type CallGate = (c: GateInput) => Promise<GateDecision>;

/** One call the model asked for, after it ended (ran, failed, was refused or denied). */
export interface ToolCallReport {
  call: ToolCall;
  /** The registered tool (undefined for unknown names). */
  tool: Tool | undefined;
  callIndex: number;
  step: number;
  ok: boolean;
  /** "ok" or a stable error code. */
  code: string;
  ms: number;
  outputChars: number;
  note?: ApprovalNote;
}

export interface ToolLoopInput {
  llm: CompletionClient;
  tools: ToolRegistry;
  /** The messages of a new loop (ignored when `resume` is given). */
  messages: LlmMessage[];
  /** Continue a parked loop from here. */
  resume?: LoopProgress;
  context: Omit<ToolContext, 'signal' | 'callIndex' | 'deadline' | 'userApproved'>;
  limits: ToolLoopLimits;
  stream: boolean;
  temperature?: number;
  maxTokens?: number;
  onDelta?: (delta: string) => void;
  /**
   * The client's own tools (OpenAI API): offered instead of `tools`, in one model call; the
   * calls the model asks for end the loop and are returned (finish_reason tool_calls), never run.
   */
  clientTools?: { specs: ToolSpec[]; choice: ToolChoice };
  /** Consulted before each valid call (approvals). Without it every call runs. */
  gate?: CallGate;
  /** Called after each call the model asked for, before the loop goes on (records, audit). */
  onToolCall?: (r: ToolCallReport) => void | Promise<void>;
  /** Applied to each tool output before the model (or a stored parked turn) sees it: credential redaction. */
  redactOutput?: (output: string) => Promise<string>;
  now?: () => number;
}

export interface ToolLoopResult extends LlmResult {
  steps: number;
  toolCallsRun: number;
  /** The messages as sent on the final step (tests inspect them). */
  messages: LlmMessage[];
}

export type LoopOutcome =
  ({ status: 'done' } & ToolLoopResult) | { status: 'parked'; progress: LoopProgress; callIndex: number; call: ToolCall; data: unknown };

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n[output truncated: ${text.length - max} more characters]`;
}

export function newProgress(messages: LlmMessage[]): LoopProgress {
  return {
    messages: [...messages],
    steps: 0,
    callIndex: 0,
    toolCallsRun: 0,
    text: '',
    usage: { promptTokens: 0, completionTokens: 0, totalTokens: 0 },
    elapsedMs: 0,
    model: '',
    finishReason: '',
  };
}

/** Calls of the last assistant message that no tool message answers yet, with their position in that step. */
export function unansweredCalls(messages: readonly LlmMessage[]): Array<{ call: ToolCall; position: number }> {
  const answered = new Set<string>();
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'tool') {
      answered.add(m.toolCallId);
      continue;
    }
    if (m.role !== 'assistant' || !m.toolCalls) return [];
    return m.toolCalls.map((call, position) => ({ call, position })).filter((c) => !answered.has(c.call.id));
  }
  return [];
}

/** One run of the loop: its input, its progress (mutated as it goes) and its clock. */
interface LoopRun {
  input: ToolLoopInput;
  p: LoopProgress;
  now: () => number;
  deadline: number;
}

type CallVerdict = { park: unknown } | { outcome: ToolOutcome; tool?: Tool | undefined; note?: ApprovalNote | undefined };

/** What a call comes to: refused by a limit, parked or answered by the gate, or run. */
async function judgeCall(run: LoopRun, call: ToolCall, position: number, callIndex: number, step: number): Promise<CallVerdict> {
  const { input, now, deadline } = run;
  const { limits } = input;
  if (position >= limits.maxCallsPerStep) {
    return {
      outcome: {
        ok: false,
        code: 'limit_exceeded',
        output: `error: at most ${limits.maxCallsPerStep} tool calls per step; this one was not run`,
      },
    };
  }
  if (deadline - now() <= 0) {
    return {
      outcome: {
        ok: false,
        code: 'time_budget_exhausted',
        output: 'error: the time budget for tools in this turn is used up; this call was not run',
      },
    };
  }
  const prepared = input.tools.prepare(call.name, call.arguments);
  if (!('tool' in prepared)) return { outcome: prepared, tool: input.tools.get(call.name) };
  const tool = prepared.tool;
  const d: GateDecision = input.gate
    ? await input.gate({ call, tool, args: prepared.args, callIndex, step })
    : { kind: 'run', userApproved: false };
  if (d.kind === 'park') return { park: d.data };
  if (d.kind === 'answer') return { outcome: { ok: false, code: d.code, output: d.output }, tool, note: d.note };
  const outcome = await input.tools.run(
    prepared,
    { ...input.context, callIndex, userApproved: d.userApproved },
    Math.max(1, Math.min(limits.toolTimeoutMs, deadline - now())),
  );
  run.p.toolCallsRun += 1;
  return { outcome, tool, note: d.note };
}

/** Runs one call and appends its answer (an untrusted block) to the messages; `{ park }` when it waits for the user. */
async function runCall(run: LoopRun, call: ToolCall, position: number): Promise<{ park: unknown } | undefined> {
  const { input, p, now } = run;
  const callIndex = p.callIndex;
  const step = p.steps;
  const t0 = now();
  const verdict = await judgeCall(run, call, position, callIndex, step);
  if ('park' in verdict) return verdict;
  const { outcome, tool, note } = verdict;
  p.callIndex += 1;
  await input.onToolCall?.({
    call,
    tool,
    callIndex,
    step,
    ok: outcome.ok,
    code: outcome.code,
    ms: now() - t0,
    outputChars: outcome.output.length,
    ...(note ? { note } : {}),
  });
  const output = cut(outcome.output, input.limits.maxToolOutputChars);
  p.messages.push({
    role: 'tool',
    toolCallId: call.id,
    name: call.name,
    content: untrustedBlock('tool', input.redactOutput && output !== '' ? await input.redactOutput(output) : output, {
      tool: call.name,
      status: outcome.ok ? 'ok' : 'error',
    }),
  });
  return undefined;
}

/** Text of several steps is joined like it was streamed: a blank line between non-empty parts. */
function joinedDeltas(onDelta: ((d: string) => void) | undefined, textSoFar: string) {
  let needsSeparator = textSoFar !== '';
  return {
    onDelta: onDelta
      ? (d: string) => {
          if (d === '') return;
          if (needsSeparator) {
            onDelta('\n\n');
            needsSeparator = false;
          }
          onDelta(d);
        }
      : undefined,
    /** A step produced text: the next step's first delta starts a new part. */
    textEnded: () => {
      if (onDelta) needsSeparator = true;
    },
  };
}

/** Adds a model response to the progress: step, usage, model, and its text to the turn's text. */
function absorb(p: LoopProgress, step: number, res: LlmResult): void {
  p.steps = step;
  p.usage.promptTokens += res.usage.promptTokens;
  p.usage.completionTokens += res.usage.completionTokens;
  p.usage.totalTokens += res.usage.totalTokens;
  p.model = res.model;
  p.finishReason = res.finishReason;
  if (res.content !== '') p.text = p.text === '' ? res.content : `${p.text}\n\n${res.content}`;
}

/** Ids must be unique: they pair each call with its answer, also across a park. */
function withUniqueIds(toolCalls: readonly ToolCall[], step: number): ToolCall[] {
  const seen = new Set<string>();
  return toolCalls.map((c, i) => {
    let id = c.id && !seen.has(c.id) ? c.id : `call_${step}_${i}`;
    while (seen.has(id)) id = `${id}_`;
    seen.add(id);
    return { ...c, id };
  });
}

/** Runs (or continues) the loop until the model answers in text or a call parks. */
export async function driveToolLoop(input: ToolLoopInput): Promise<LoopOutcome> {
  const now = input.now ?? Date.now;
  const { limits } = input;
  const startedAt = now();
  const r = input.resume;
  const p: LoopProgress = r ? { ...r, messages: [...r.messages], usage: { ...r.usage } } : newProgress(input.messages);
  const run: LoopRun = { input, p, now, deadline: startedAt + limits.timeoutMs - p.elapsedMs };
  const client = input.clientTools;
  const specs = client ? client.specs : input.tools.specs();
  const deltas = joinedDeltas(input.onDelta, p.text);

  for (;;) {
    // Calls asked for but not answered yet: the current step's (or a parked one's). The client's are its own to run.
    for (const { call, position } of client ? [] : unansweredCalls(p.messages)) {
      const parked = await runCall(run, call, position);
      if (parked) {
        return {
          status: 'parked',
          progress: { ...p, messages: [...p.messages], elapsedMs: p.elapsedMs + (now() - startedAt) },
          callIndex: p.callIndex,
          call,
          data: parked.park,
        };
      }
    }
    const step = p.steps + 1;
    const final = client !== undefined || specs.length === 0 || step >= limits.maxSteps || now() >= run.deadline;
    const res = await input.llm.complete(
      {
        messages: p.messages,
        stream: input.stream,
        // Egress records whose turn this call is for.
        ...(input.context.conversation.userId ? { user: input.context.conversation.userId } : {}),
        ...(input.temperature !== undefined ? { temperature: input.temperature } : {}),
        ...(input.maxTokens !== undefined ? { maxTokens: input.maxTokens } : {}),
        ...(specs.length > 0 ? { tools: specs, toolChoice: client ? client.choice : final ? ('none' as const) : ('auto' as const) } : {}),
      },
      deltas.onDelta,
    );
    absorb(p, step, res);
    if (res.content !== '') deltas.textEnded();
    if (client && res.toolCalls.length > 0) {
      // The client runs its tools and sends the results in its next request.
      return {
        status: 'done',
        ...res,
        content: p.text,
        finishReason: 'tool_calls',
        toolCalls: withUniqueIds(res.toolCalls, step),
        usage: p.usage,
        steps: step,
        toolCallsRun: p.toolCallsRun,
        messages: p.messages,
      };
    }
    if (final || res.toolCalls.length === 0) {
      return {
        status: 'done',
        ...res,
        content: p.text,
        // A model that ignored tool_choice "none" still ends the turn here.
        finishReason: res.toolCalls.length > 0 ? 'stop' : res.finishReason,
        toolCalls: [],
        usage: p.usage,
        steps: step,
        toolCallsRun: p.toolCallsRun,
        messages: p.messages,
      };
    }
    p.messages.push({ role: 'assistant', content: res.content, toolCalls: withUniqueIds(res.toolCalls, step) });
  }
}

/** The loop without parking (no gate): always runs to a final answer. */
export async function runToolLoop(input: Omit<ToolLoopInput, 'gate' | 'resume'>): Promise<ToolLoopResult> {
  const out = await driveToolLoop(input);
  if (out.status !== 'done') throw new Error('a tool loop without a gate cannot park');
  const { status: _status, ...rest } = out;
  return rest;
}
