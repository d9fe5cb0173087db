// What an event or a heartbeat gives a routine's turn (pure): the operator's prompt,
// then the event's payload or the heartbeat's checklist as an <untrusted> block (data,
// never instructions), size-capped; the caller redacts the whole text before queueing it.
// Also the one format of a memory-document event on talon.events.document (no content:
// the user, the key and the title only).
import { SUBJECTS } from '@talon/kit/subjects';
import { capPayload, heartbeatInstructions, type RoutineEvent } from '@talon/records/routines';
import { untrustedBlock } from './untrusted.ts';

const DOCUMENT_SUBJECT = SUBJECTS.events('document');

/** The body of a memory-document event (JSON). */
export function documentEventBody(userId: string, key: string, title: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ user: userId, key, title: title.slice(0, 200) }));
}

/** An event read from TALON_EVENTS: its subject, sequence and (document events) user and key. */
export function readEvent(subject: string, seq: number, data: Uint8Array): { event: RoutineEvent; payload: string } {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(data);
  if (subject !== DOCUMENT_SUBJECT) return { event: { subject, seq }, payload: text };
  try {
    const b = JSON.parse(text) as { user?: unknown; key?: unknown; title?: unknown };
    if (typeof b.user === 'string' && typeof b.key === 'string') {
      const title = typeof b.title === 'string' ? b.title : '';
      return {
        event: { subject, seq, document: { userId: b.user, key: b.key } },
        payload: `A memory document was stored: key ${JSON.stringify(b.key)}${title ? `, title ${JSON.stringify(title)}` : ''}.`,
      };
    }
  } catch {
    /* not a document event */
  }
  return { event: { subject, seq }, payload: '' };
}

/** The user message of an event's turn: the prompt, then the capped payload as untrusted data. */
export function eventPrompt(prompt: string, trigger: string, subject: string, payload: string): string {
  return `${prompt}\n\n${untrustedBlock('event', capPayload(payload), { trigger, subject })}`;
}

/** The user message of a heartbeat's turn: how to answer, then the checklist (when memory has it) as untrusted data. */
export function heartbeatPrompt(prompt: string, checklistKey: string, checklist: string | undefined): string {
  const head = heartbeatInstructions(prompt, checklistKey);
  if (checklist === undefined || checklist.trim() === '')
    return `${head}\n\n(The checklist document was not found in memory; use memory_search for it.)`;
  return `${head}\n\n${untrustedBlock('memory', capPayload(checklist), { document: checklistKey })}`;
}

/** A checklist's text from memory search hits: the chunks of the document of that key, in the order found. */
export function checklistText(
  hits: ReadonlyArray<{ kind: string; documentKey: string; content: string }>,
  key: string,
): string | undefined {
  const parts = hits.filter((h) => h.kind === 'document' && h.documentKey === key).map((h) => h.content);
  return parts.length > 0 ? parts.join('\n') : undefined;
}
