// Explicit memory tools for the model: save a note, search the user's memory.
// Both act for the turn's user only (taken from the conversation, never from
// the model's arguments). Results are JSON so stored text cannot fake structure;
// the agent loop wraps them as untrusted tool output.
import type { MemoryApi } from '../memory.ts';
import type { Recall } from '../recall.ts';
import type { Tool } from './registry.ts';

export interface MemoryToolOptions {
  memory: MemoryApi;
  recall: Recall;
  /** Longest note memory_save accepts. */
  maxNoteChars: number;
  /** Most results memory_search returns. */
  maxResults: number;
}

export function memoryTools(o: MemoryToolOptions): Tool[] {
  const save: Tool = {
    name: 'memory_save',
    description:
      "Save a fact or note to the user's long-term memory so it can be recalled in later, separate conversations. " +
      'Use it for durable facts the user states about themselves or asks you to remember.',
    parameters: {
      type: 'object',
      properties: {
        text: { type: 'string', minLength: 1, maxLength: o.maxNoteChars, description: 'The fact or note, self-contained.' },
        title: { type: 'string', maxLength: 200, description: 'Optional short title.' },
      },
      required: ['text'],
      additionalProperties: false,
    },
    async handler(args, ctx) {
      // Keyed by turn and call position: a redelivered turn overwrites, never duplicates.
      const key = `note:${ctx.inboundId}:${ctx.callIndex}`;
      const res = await o.memory.upsertDocument({
        userId: ctx.conversation.userId,
        key,
        title: typeof args.title === 'string' ? args.title : '',
        content: String(args.text),
        source: 'assistant',
        origin: ctx.conversation,
      });
      return JSON.stringify({ saved: true, key, chunks: res.chunks });
    },
  };
  const search: Tool = {
    name: 'memory_search',
    description: "Search the user's long-term memory (earlier conversations and saved notes). Returns the best matching snippets.",
    parameters: {
      type: 'object',
      properties: {
        query: { type: 'string', minLength: 1, maxLength: 1000, description: 'What to look for, in natural language or keywords.' },
        limit: {
          type: 'integer',
          minimum: 1,
          maximum: o.maxResults,
          description: `How many results (default 5, at most ${o.maxResults}).`,
        },
      },
      required: ['query'],
      additionalProperties: false,
    },
    async handler(args, ctx) {
      const hits = await o.recall.search(ctx.conversation.userId, String(args.query), {
        limit: typeof args.limit === 'number' ? args.limit : Math.min(5, o.maxResults),
        signal: ctx.signal,
      });
      return JSON.stringify({
        results: hits.map((h) => ({
          source: h.source,
          kind: h.kind,
          from: h.kind === 'turn' ? `${h.channel}/${h.threadId}` : h.title || h.documentKey,
          date: h.createdAtMs > 0 ? new Date(h.createdAtMs).toISOString().slice(0, 10) : undefined,
          text: h.content,
        })),
      });
    },
  };
  return [save, search];
}
