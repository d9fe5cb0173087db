// The labelled recall set in test/fixtures/recall: documents and queries with the
// ids of their relevant documents. Shared by the recall test and bench/memory.ts.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Embedder } from '@talon/embed';
import type { MemoryStore } from '../src/store.ts';

export interface RecallDoc {
  id: string;
  text: string;
}
export interface RecallQuery {
  q: string;
  relevant: string[];
}

const DIR = resolve(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'recall');

function jsonl<T>(file: string): T[] {
  return readFileSync(join(DIR, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

export function loadRecallSet(): { docs: RecallDoc[]; queries: RecallQuery[] } {
  return { docs: jsonl<RecallDoc>('docs.jsonl'), queries: jsonl<RecallQuery>('queries.jsonl') };
}

export async function ingestRecallSet(store: MemoryStore, userId: string, docs: readonly RecallDoc[]): Promise<void> {
  for (const d of docs) await store.upsertDocument({ userId, key: `fixture:${d.id}`, title: '', content: d.text, source: 'user' });
}

export type RecallMode = 'hybrid' | 'text' | 'vector';

/**
 * Mean recall@k over the queries (the fraction of each query's relevant documents
 * in its top k) and the queries that missed some. `text` searches full text only
 * (no vector), `vector` sends only the query embedding.
 */
export async function recallAtK(
  store: MemoryStore,
  userId: string,
  queries: readonly RecallQuery[],
  k: number,
  mode: RecallMode,
  embedder: Embedder,
): Promise<{ recall: number; misses: string[] }> {
  let sum = 0;
  const misses: string[] = [];
  for (const q of queries) {
    const [v] = mode === 'text' ? [undefined] : await embedder.embed([q.q]);
    const res = await store.search(
      { userId, query: mode === 'vector' ? '' : q.q, limit: k, ...(v ? { vector: v } : {}) },
      { vector: mode !== 'text' },
    );
    const got = new Set(res.hits.map((h) => h.documentKey.replace(/^fixture:/, '')));
    const found = q.relevant.filter((id) => got.has(id)).length;
    sum += found / q.relevant.length;
    if (found < q.relevant.length) misses.push(q.q);
  }
  return { recall: sum / queries.length, misses };
}
