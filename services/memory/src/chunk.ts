// Splits long text into overlapping chunks for search. Pure.
// Cuts prefer (in order) a paragraph break, a line break, a sentence end, then
// any whitespace in the second half of the window; the next chunk starts
// `overlap` characters earlier, moved forward to a word start, so a fact that
// straddles a cut is whole in at least one chunk.

export interface ChunkOptions {
  /** Target maximum chunk length in UTF-16 code units. */
  size: number;
  /** Characters repeated from the end of one chunk at the start of the next. */
  overlap: number;
}

const BREAKS: readonly RegExp[] = [/\n\s*\n/g, /\n/g, /[.!?。！？](?:["')\]]*)\s/g, /\s/g];

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Where to end a chunk that starts at `start` with hard limit `limit`. */
function cutPoint(text: string, start: number, limit: number): number {
  const window = text.slice(start, limit);
  const minCut = Math.floor(window.length / 2);
  for (const re of BREAKS) {
    let best = -1;
    re.lastIndex = 0;
    for (const m of window.matchAll(re)) {
      const end = m.index + m[0].length;
      if (end >= minCut && end <= window.length) best = end;
    }
    if (best > 0) return start + best;
  }
  // No boundary: hard cut, never between the halves of a surrogate pair.
  let cut = limit;
  if (cut < text.length && isLowSurrogate(text.charCodeAt(cut))) cut -= 1;
  return cut;
}

export function chunkText(text: string, opts: ChunkOptions): string[] {
  const size = Math.max(1, opts.size);
  const overlap = Math.max(0, Math.min(opts.overlap, Math.floor(size / 2)));
  const trimmed = text.trim();
  if (trimmed === '') return [];
  if (trimmed.length <= size) return [trimmed];
  const out: string[] = [];
  let start = 0;
  while (start < trimmed.length) {
    const limit = Math.min(start + size, trimmed.length);
    const end = limit >= trimmed.length ? trimmed.length : cutPoint(trimmed, start, limit);
    const piece = trimmed.slice(start, end).trim();
    if (piece !== '') out.push(piece);
    if (end >= trimmed.length) break;
    let next = Math.max(end - overlap, start + 1);
    // Start the next chunk at a word start (within the overlap) rather than mid-word.
    if (next < end && !/\s/.test(trimmed[next - 1] ?? ' ')) {
      const ws = trimmed.slice(next, end).search(/\s/);
      if (ws >= 0) next += ws + 1;
    }
    if (isLowSurrogate(trimmed.charCodeAt(next))) next += 1;
    start = next;
  }
  return out;
}

/** Upper bound of chunks for a text of `chars` characters (for refusing oversized input early). */
export function maxChunks(chars: number, opts: ChunkOptions): number {
  const step = Math.max(1, Math.min(opts.size, opts.size - Math.min(opts.overlap, Math.floor(opts.size / 2))));
  return Math.ceil(chars / Math.max(1, Math.floor(step / 2))) + 1;
}
