// Inbound redaction: every message a user sends (API, WebSocket, web UI, every
// channel) is checked by egress's leak scanner before it is queued on
// TALON_INBOUND, and each credential in it is replaced by [redacted:<label>].
// The gateway never holds a secret value or the vault's fingerprints: it sends
// the text to egress (EgressService.RedactText) and gets the redacted text back.
import type { ChatMessage, RedactedText } from '@talon/proto';

export interface TextRedactor {
  /** One result per text, in order; throws `unavailable` when egress cannot answer. */
  redactTexts(texts: readonly string[]): Promise<RedactedText[]>;
}

export interface RedactedMessages {
  messages: ChatMessage[];
  /** What was removed (rule ids or vault_secret), each once; empty when nothing was. */
  labels: string[];
}

/**
 * The messages with every credential replaced, in their text and in the arguments of
 * the tool calls a client sends back; one egress call for all of them.
 */
export async function redactMessages(r: TextRedactor, messages: readonly ChatMessage[]): Promise<RedactedMessages> {
  const out = messages.map((m) =>
    m.parts ? { ...m, parts: { ...m.parts, toolCalls: m.parts.toolCalls.map((c) => ({ ...c })) } } : { ...m },
  );
  const texts: Array<{ get: () => string; set: (v: string) => void }> = [];
  for (const m of out) {
    texts.push({ get: () => m.content, set: (v) => (m.content = v) });
    for (const c of m.parts?.toolCalls ?? []) texts.push({ get: () => c.arguments, set: (v) => (c.arguments = v) });
  }
  const at = texts.filter((t) => t.get() !== '');
  if (at.length === 0) return { messages: out, labels: [] };
  const results = await r.redactTexts(at.map((t) => t.get()));
  if (results.length !== at.length) throw new Error(`RedactText answered ${results.length} texts for ${at.length}`);
  const labels = new Set<string>();
  results.forEach((res, k) => {
    if (res.labels.length === 0) return;
    at[k]!.set(res.text);
    for (const l of res.labels) labels.add(l);
  });
  return { messages: out, labels: [...labels] };
}
