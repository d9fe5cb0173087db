// The tools offered to the model in the agent loop: the memory tools and the
// approved skills (WASM tools run by the sandbox), each a name, a JSON schema for
// the arguments, and a handler returning text. The registry
// validates arguments against the schema before a handler runs and bounds each
// call in time; handlers get an AbortSignal and must honour it.
import type { ConversationRef } from '@talon/proto';
import type { ToolSpec } from '../llm/types.ts';

export type JsonSchema = Record<string, unknown>;

export interface ToolContext {
  conversation: ConversationRef;
  /** Inbound message id: stable across redeliveries of the same turn. */
  inboundId: string;
  /** 0-based index of this call within the turn (stable idempotency keys). */
  callIndex: number;
  /** The user approved this very call (tools that need approval run only then). */
  userApproved?: boolean;
  signal: AbortSignal;
  /** Epoch ms at which the registry gives up on the call. */
  deadline: number;
}

/** What the platform knows about a tool beyond its schema (skills: which skill, which version). */
export interface ToolMeta {
  skill: string;
  version: string;
  /** Each call waits for the user's approval before it runs. */
  requiresApproval: boolean;
}

export interface Tool {
  /** ^[a-zA-Z0-9_-]{1,64}$ (the providers' limit). */
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: JsonSchema;
  meta?: ToolMeta;
  handler(args: Record<string, unknown>, ctx: ToolContext): Promise<string>;
}

/** A tool failure the model may read; `code` is a stable snake_case outcome for records and audit. */
export class ToolError extends Error {
  readonly code: string;
  constructor(message: string, code = 'tool_error') {
    super(message);
    this.name = 'ToolError';
    this.code = code;
  }
}

export interface ToolOutcome {
  ok: boolean;
  output: string;
  /** "ok" or a stable error code (unknown_tool, invalid_arguments, timeout, tool_error, or the tool's own). */
  code: string;
}

/** A call whose tool exists and whose arguments passed the schema. */
export interface PreparedCall {
  tool: Tool;
  args: Record<string, unknown>;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export class ToolRegistry {
  private readonly tools = new Map<string, Tool>();

  register(tool: Tool): this {
    if (!TOOL_NAME.test(tool.name)) throw new Error(`tool name ${JSON.stringify(tool.name)} must match ${TOOL_NAME.source}`);
    if (this.tools.has(tool.name)) throw new Error(`tool ${tool.name} is registered twice`);
    if (tool.parameters.type !== 'object') throw new Error(`tool ${tool.name}: parameters must be a JSON schema of type object`);
    this.tools.set(tool.name, tool);
    return this;
  }

  get size(): number {
    return this.tools.size;
  }

  specs(): ToolSpec[] {
    return [...this.tools.values()].map((t) => ({ name: t.name, description: t.description, parameters: t.parameters }));
  }

  get(name: string): Tool | undefined {
    return this.tools.get(name);
  }

  /** Finds the tool and checks the arguments; an error outcome when either fails. */
  prepare(name: string, rawArgs: string): PreparedCall | ToolOutcome {
    const tool = this.tools.get(name);
    if (!tool) return { ok: false, code: 'unknown_tool', output: `error: there is no tool named ${JSON.stringify(name.slice(0, 64))}` };
    let args: unknown;
    try {
      args = rawArgs.trim() === '' ? {} : JSON.parse(rawArgs);
    } catch {
      return { ok: false, code: 'invalid_arguments', output: 'error: the arguments are not valid JSON' };
    }
    const problem = validate(tool.parameters, args, 'arguments');
    if (problem) return { ok: false, code: 'invalid_arguments', output: `error: ${problem}` };
    return { tool, args: args as Record<string, unknown> };
  }

  /** Runs a prepared call within timeoutMs. Never throws: failures become error outcomes. */
  async run(call: PreparedCall, ctx: Omit<ToolContext, 'signal' | 'deadline'>, timeoutMs: number): Promise<ToolOutcome> {
    const { tool } = call;
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      const output = await Promise.race([
        tool.handler(call.args, { ...ctx, signal: ac.signal, deadline: Date.now() + timeoutMs }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            // Settle the race first, then tell the handler to stop.
            reject(new ToolError(`${tool.name} did not finish within ${timeoutMs} ms`, 'timeout'));
            ac.abort();
          }, timeoutMs);
        }),
      ]);
      return { ok: true, code: 'ok', output };
    } catch (err) {
      const te = err instanceof ToolError ? err : undefined;
      const msg = te ? te.message : `${tool.name} failed: ${(err as Error).message ?? String(err)}`;
      return { ok: false, code: te?.code ?? 'tool_error', output: `error: ${msg.slice(0, 500)}` };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /**
   * Runs one call. Never throws: an unknown tool, bad arguments, a failure or a
   * timeout become an error text the model can read and recover from.
   */
  async invoke(name: string, rawArgs: string, ctx: Omit<ToolContext, 'signal' | 'deadline'>, timeoutMs: number): Promise<ToolOutcome> {
    const p = this.prepare(name, rawArgs);
    if (!('tool' in p)) return p;
    return this.run(p, ctx, timeoutMs);
  }
}

/**
 * A deliberately small JSON Schema check (type, properties, required,
 * additionalProperties: false, enum, string length, number range, array items):
 * enough for tool arguments; returns the first problem or undefined.
 */
export function validate(schema: JsonSchema, value: unknown, path: string): string | undefined {
  const type = schema.type as string | undefined;
  const actual = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
  if (type === 'integer') {
    if (typeof value !== 'number' || !Number.isInteger(value)) return `${path} must be an integer`;
  } else if (type && type !== actual) return `${path} must be ${type === 'object' || type === 'array' ? 'an' : 'a'} ${type}`;
  if (Array.isArray(schema.enum) && !schema.enum.includes(value))
    return `${path} must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength)
      return `${path} must have at least ${schema.minLength} characters`;
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength)
      return `${path} must have at most ${schema.maxLength} characters`;
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) return `${path} must be at least ${schema.minimum}`;
    if (typeof schema.maximum === 'number' && value > schema.maximum) return `${path} must be at most ${schema.maximum}`;
  }
  if (Array.isArray(value) && schema.items && typeof schema.items === 'object') {
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems) return `${path} must have at most ${schema.maxItems} items`;
    for (const [i, v] of value.entries()) {
      const p = validate(schema.items as JsonSchema, v, `${path}[${i}]`);
      if (p) return p;
    }
  }
  if (actual === 'object' && (type === 'object' || schema.properties)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    for (const r of (schema.required as string[] | undefined) ?? []) if (!(r in obj)) return `${path}.${r} is required`;
    for (const [k, v] of Object.entries(obj)) {
      const sub = props[k];
      if (!sub) {
        if (schema.additionalProperties === false) return `${path}.${k} is not a known argument`;
        continue;
      }
      const p = validate(sub, v, `${path}.${k}`);
      if (p) return p;
    }
  }
  return undefined;
}
