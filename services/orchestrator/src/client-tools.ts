// What an OpenAI API turn brings beyond text, as the orchestrator uses it. Pure.
//   - the client's own function tools and tool_choice (checked by the gateway) become the
//     loop's `clientTools`: offered alone, their calls returned to the client, never run;
//   - images reach the model but never memory: the stored turn keeps a placeholder.
import type { ChatMessage, InboundMessage } from '@talon/proto';
import type { ToolCall, ToolChoice, ToolSpec } from './llm/types.ts';

export const IMAGE_PLACEHOLDER = '[image]';

function schemaOf(json: string): Record<string, unknown> {
  try {
    const v = JSON.parse(json) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* the gateway sent a checked schema; anything else offers an empty one */
  }
  return { type: 'object', properties: {} };
}

/** The wire's tool_choice (auto, none, required, function:<name>; '' is auto). */
export function toolChoiceOf(raw: string): ToolChoice {
  if (raw === 'none' || raw === 'required') return raw;
  if (raw.startsWith('function:')) return { name: raw.slice('function:'.length) };
  return 'auto';
}

/** The client's tools of a turn; undefined when it offered none (Talon's own tools are offered then). */
export function clientToolsOf(inbound: Pick<InboundMessage, 'clientTools'>): { specs: ToolSpec[]; choice: ToolChoice } | undefined {
  const ct = inbound.clientTools;
  if (!ct || ct.tools.length === 0) return undefined;
  return {
    specs: ct.tools.map((t) => ({ name: t.name, description: t.description, parameters: schemaOf(t.parametersJson) })),
    choice: toolChoiceOf(ct.choice),
  };
}

/** What memory keeps of a user message: its text, one placeholder per image (images are never stored). */
export function storedUserText(m: Pick<ChatMessage, 'content' | 'parts'>): string {
  const images = m.parts?.images.length ?? 0;
  if (images === 0) return m.content;
  const marks = Array.from({ length: images }, () => IMAGE_PLACEHOLDER).join(' ');
  return m.content === '' ? marks : `${m.content}\n${marks}`;
}

/** What memory keeps of an answer that called the client's tools: its text and the names called. */
export function storedAnswerText(content: string, calls: readonly ToolCall[]): string {
  if (calls.length === 0) return content;
  const note = `[called the client's tools: ${calls.map((c) => c.name).join(', ')}]`;
  return content === '' ? note : `${content}\n${note}`;
}
