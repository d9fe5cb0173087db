// "hashed-lexical-v1": a local embedding that needs no model file and no network,
// so the embedded default works offline. It is lexical, not semantic: it maps
// text to a fixed-size vector by feature hashing (the "hashing trick") of
//   - word unigrams (lower-cased, NFKC, English stop words dropped, crude suffix folding),
//   - word bigrams of adjacent content words,
//   - character trigrams of each word padded with boundary marks (typos, inflections,
//     scripts without spaces),
// each added with a sign taken from an independent hash bit (so collisions cancel
// in expectation) and the result L2-normalised. Similar wording gives similar
// vectors; synonyms do not. Configure a remote model for semantic recall.
import { l2normalize, type Embedder } from './types.ts';

export const HASHED_LEXICAL_MODEL = 'hashed-lexical-v1';

// Feature weights: whole words carry most signal; n-grams add robustness.
const W_UNIGRAM = 1.0;
const W_BIGRAM = 0.6;
const W_TRIGRAM = 0.25;

const SEED_UNIGRAM = 0x9e3779b1;
const SEED_BIGRAM = 0x85ebca77;
const SEED_TRIGRAM = 0xc2b2ae3d;

// Common English function words: they would dominate every vector.
const STOP = new Set(
  (
    'a an and are as at be been being but by can could did do does doing for from had has have having he her here hers him his how i if ' +
    'in into is it its itself just me more most my myself no nor not of off on once only or other our ours out over own same she should so ' +
    'some such than that the their theirs them then there these they this those through to too under until up very was we were what when ' +
    'where which while who whom why will with would you your yours yourself s t ll re ve d m don doesn didn isn wasn aren weren'
  ).split(' '),
);

const WORD = /[\p{L}\p{N}]+/gu;
const ASCII_WORD = /^[a-z]+$/;

/** Folds common English inflections so "running"/"runs"/"run" share a feature. */
export function foldSuffix(w: string): string {
  if (w.length <= 3 || !ASCII_WORD.test(w)) return w;
  if (w.endsWith('ies') && w.length > 4) return `${w.slice(0, -3)}y`;
  if (w.endsWith('ing') && w.length > 5) return w.slice(0, -3);
  if (w.endsWith('ed') && w.length > 4) return w.slice(0, -2);
  if (w.endsWith('es') && /(?:ss|sh|ch|x|z)es$/.test(w)) return w.slice(0, -2);
  if (w.endsWith('s') && !w.endsWith('ss') && !w.endsWith('us') && !w.endsWith('is')) return w.slice(0, -1);
  return w;
}

function fnv(s: string, start: number, end: number, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// murmur3 finaliser: spreads FNV's low-entropy bits before index and sign are taken.
function fmix(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function add(v: Float32Array, h: number, w: number): void {
  const m = fmix(h);
  const idx = m % v.length;
  // The sign comes from bits the index (m % dim, dim < 2^16) barely depends on.
  v[idx] = v[idx]! + ((m >>> 31) & 1 ? -w : w);
}

/** Content words of a text, normalised (exported for tests). */
export function contentWords(text: string): string[] {
  const norm = text.normalize('NFKC').toLowerCase();
  const out: string[] = [];
  for (const m of norm.matchAll(WORD)) {
    const w = m[0];
    if (STOP.has(w)) continue;
    if (w.length === 1 && !/\p{N}/u.test(w) && w.charCodeAt(0) < 0x2e80) continue; // stray Latin letters; keep CJK single characters
    out.push(foldSuffix(w));
  }
  return out;
}

export function hashedLexicalVector(text: string, dim: number): Float32Array {
  const v = new Float32Array(dim);
  const words = contentWords(text);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    add(v, fnv(w, 0, w.length, SEED_UNIGRAM), W_UNIGRAM);
    if (i > 0) {
      const prev = words[i - 1]!;
      add(v, fnv(w, 0, w.length, fnv(prev, 0, prev.length, SEED_BIGRAM) ^ 0x20), W_BIGRAM);
    }
    const padded = `\u0002${w}\u0003`;
    for (let j = 0; j + 3 <= padded.length; j++) add(v, fnv(padded, j, j + 3, SEED_TRIGRAM), W_TRIGRAM);
  }
  return l2normalize(v);
}

export class HashedLexicalEmbedder implements Embedder {
  readonly model = HASHED_LEXICAL_MODEL;
  readonly dim: number;
  readonly local = true;

  constructor(dim = 384) {
    if (!Number.isInteger(dim) || dim < 16 || dim > 16000) throw new RangeError(`hashed-lexical dimension must be 16-16000, got ${dim}`);
    this.dim = dim;
  }

  embedOne(text: string): Float32Array {
    return hashedLexicalVector(text, this.dim);
  }

  embed(texts: readonly string[]): Promise<Float32Array[]> {
    return Promise.resolve(texts.map((t) => hashedLexicalVector(t, this.dim)));
  }
}
