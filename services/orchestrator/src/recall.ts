// Recall for a turn and for the memory_search tool: the user's memory searched
// by memory's hybrid search. With a remote embedding model the orchestrator
// computes the query embedding (memory never talks to the outside); when that
// fails the search still runs on full text alone.
import type { Embedder } from '@talon/embed';
import type { Logger } from '@talon/kit/log';
import type { ConversationRef, SearchHit, SearchRequest } from '@talon/proto';
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
  private readonly embedder: RecallOptions['embedder'];
  private readonly log: RecallOptions['log'];
  private readonly memory: RecallOptions['memory'];
  private readonly minSimilarity: RecallOptions['minSimilarity'];
  constructor(opts: RecallOptions) {
    this.embedder = opts.embedder;
    this.log = opts.log;
    this.memory = opts.memory;
    this.minSimilarity = opts.minSimilarity;
  }

  /**
   * The Search request recalling memories for `text` (the query embedding computed
   * here when this process has the embedder), or undefined when there is nothing to
   * recall. Sent as it is, or inside memory's BeginTurn.
   */
  async request(
    userId: string,
    text: string,
    opts: { limit: number; exclude?: ConversationRef; signal?: AbortSignal },
  ): Promise<SearchRequest | undefined> {
    const query = recallQuery(text);
    if (query === '' || opts.limit <= 0) return undefined;
    let queryEmbedding: { model: string; dim: number; values: number[] } | undefined;
    if (this.embedder) {
      try {
        const [v] = await this.embedder.embed([query], opts.signal, { user: userId });
        queryEmbedding = { model: this.embedder.model, dim: this.embedder.dim, values: Array.from(v!) };
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'query embedding failed; recalling by full text only');
      }
    }
    return {
      userId,
      query,
      limit: opts.limit,
      queryEmbedding,
      excludeConversation: opts.exclude,
      sources: [],
      minSimilarity: this.minSimilarity,
    };
  }

  async search(
    userId: string,
    text: string,
    opts: { limit: number; exclude?: ConversationRef; signal?: AbortSignal },
  ): Promise<SearchHit[]> {
    const req = await this.request(userId, text, opts);
    return req ? (await this.memory.search(req)).hits : [];
  }
}
