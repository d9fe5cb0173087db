// Recall for a turn and for the memory_search tool: the user's memory searched
// by memory's hybrid search. With a remote embedding model the orchestrator
// computes the query embedding (memory never talks to the outside); when that
// fails the search still runs on full text alone.
import type { Embedder } from '@talon/embed';
import type { Logger } from '@talon/kit';
import type { ConversationRef, SearchHit } from '@talon/proto';
import type { MemoryApi } from './memory.ts';

/** Query text sent to memory: NULs removed, cut to a size memory accepts. */
export function recallQuery(text: string, maxChars = 2000): string {
  const clean = text.replaceAll('\u0000', ' ').trim();
  return clean.length > maxChars ? clean.slice(0, maxChars) : clean;
}

export interface RecallOptions {
  memory: MemoryApi;
  /** Remote embedder (undefined when memory embeds locally). */
  embedder: Embedder | undefined;
  log: Logger;
  minSimilarity: number;
}

export class Recall {
  private readonly o: RecallOptions;
  constructor(opts: RecallOptions) {
    this.o = opts;
  }

  async search(
    userId: string,
    text: string,
    opts: { limit: number; exclude?: ConversationRef; signal?: AbortSignal },
  ): Promise<SearchHit[]> {
    const query = recallQuery(text);
    if (query === '' || opts.limit <= 0) return [];
    let queryEmbedding: { model: string; dim: number; values: number[] } | undefined;
    if (this.o.embedder) {
      try {
        const [v] = await this.o.embedder.embed([query], opts.signal);
        queryEmbedding = { model: this.o.embedder.model, dim: this.o.embedder.dim, values: Array.from(v!) };
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'query embedding failed; recalling by full text only');
      }
    }
    const res = await this.o.memory.search({
      userId,
      query,
      limit: opts.limit,
      queryEmbedding,
      excludeConversation: opts.exclude,
      sources: [],
      minSimilarity: this.o.minSimilarity,
    });
    return res.hits;
  }
}
