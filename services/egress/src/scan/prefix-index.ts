// A set of 4-byte keys searched in one pass over a buffer. Both the rule
// literals and the secret fingerprints' prefixes live in one index, so a layer
// is read once whatever the number of rules and secrets.
//
// The hot loop keeps the last four bytes as an int32 and tests a one-byte-per-slot
// filter addressed by a multiplicative hash of it; only filter hits (under 1 % of
// positions) probe the exact table. The exact table is open addressing over
// Int32Arrays: a Map would box every int32 key outside V8's 31-bit small-integer
// range into a heap number on each lookup, which made lookups ~100x slower.

/** The four bytes at `offset` as a little-endian int32 (what a Uint32Array read gives on every platform Node runs on). */
export function key4(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24);
}

/** The first four characters of a latin1 string as a key. */
export function key4OfLatin1(s: string): number {
  if (s.length < 4) throw new RangeError(`a prefix key needs 4 characters, got ${s.length}`);
  return s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Multiplier of the filter's hash: a key's filter slot is `Math.imul(key, GOLDEN) >>> filterShift`. */
export const GOLDEN = 0x9e3779b1 | 0;

export class Prefix4Index<T> {
  readonly #filter: Uint8Array;
  readonly #filterShift: number;
  /** Open addressing: #slots[i] is 0 (empty) or 1 + an index into #values; #keys[i] its key. */
  readonly #slots: Int32Array;
  readonly #keys: Int32Array;
  readonly #tableShift: number;
  readonly #values: T[][] = [];
  readonly #keyList: number[] = [];
  /** Filter hits of the current batch (scans are synchronous and onHit does not start another scan of this index). */
  readonly #found = new Int32Array(4096);

  constructor(entries: Iterable<readonly [number, T]>) {
    const grouped = new Map<number, T[]>();
    for (const [k, v] of entries) {
      const list = grouped.get(k | 0);
      if (list) list.push(v);
      else grouped.set(k | 0, [v]);
    }
    const count = grouped.size;
    // About 64 filter slots per key keeps false filter hits near 1.5 % of positions.
    // 2^18 slots (256 KiB, cache-resident) suffice for the built-in rules plus a few
    // hundred secrets; very large vaults get up to 2^20.
    const filterBits = Math.min(count > 4096 ? 20 : 18, Math.max(10, Math.ceil(Math.log2(Math.max(1, count) * 64))));
    this.#filterShift = 32 - filterBits;
    this.#filter = new Uint8Array(1 << filterBits);
    const tableBits = Math.max(4, Math.ceil(Math.log2(Math.max(1, count) * 4)));
    this.#tableShift = 32 - tableBits;
    this.#slots = new Int32Array(1 << tableBits);
    this.#keys = new Int32Array(1 << tableBits);
    const mask = (1 << tableBits) - 1;
    for (const [k, list] of grouped) {
      this.#filter[Math.imul(k, GOLDEN) >>> this.#filterShift] = 1;
      let s = Math.imul(k, GOLDEN) >>> this.#tableShift;
      while (this.#slots[s] !== 0) s = (s + 1) & mask;
      this.#values.push(list);
      this.#slots[s] = this.#values.length;
      this.#keys[s] = k;
      this.#keyList.push(k);
    }
  }

  get size(): number {
    return this.#values.length;
  }

  keys(): readonly number[] {
    return this.#keyList;
  }

  /** Whether `key` may be in the index (the filter alone: false positives, never false negatives). */
  mayHave(key: number): boolean {
    return this.#filter[Math.imul(key | 0, GOLDEN) >>> this.#filterShift] !== 0;
  }

  /** The filter itself, for loops that test many keys without a call each (slot: see GOLDEN). */
  get filter(): { readonly slots: Uint8Array; readonly shift: number } {
    return { slots: this.#filter, shift: this.#filterShift };
  }

  get(key: number): readonly T[] | undefined {
    const k = key | 0;
    const mask = this.#slots.length - 1;
    for (let s = Math.imul(k, GOLDEN) >>> this.#tableShift; this.#slots[s] !== 0; s = (s + 1) & mask)
      if (this.#keys[s] === k) return this.#values[this.#slots[s]! - 1];
    return undefined;
  }

  /**
   * Calls `onHit(start, values)` for every offset in [from, to - 4] whose four
   * bytes are a key, in increasing order. `onHit` returning true stops the scan.
   *
   * Two phases per batch: a call-free loop collects filter hits into a scratch
   * array, then they are confirmed against the exact table and reported. Any
   * call inside the byte loop, even one rarely taken, would make V8 reload the
   * typed arrays' base and length on every iteration (the callee could detach
   * them), which costs about a factor of two. The byte loop reads aligned 32-bit
   * words and derives the four windows of each from it and the next word.
   */
  scan(data: Uint8Array, onHit: (start: number, values: readonly T[]) => boolean | void, from = 0, to = data.length): void {
    if (this.#values.length === 0 || to - from < 4) return;
    const filter = this.#filter;
    const fShift = this.#filterShift;
    const found = this.#found;
    const cap = found.length - 4;
    const lastStart = to - 4;
    let count = 0;
    const flush = (): boolean => {
      const n = count;
      count = 0;
      for (let c = 0; c < n; c++) {
        const at = found[c]!;
        const values = this.get(key4(data, at));
        if (values !== undefined && onHit(at, values) === true) return true;
      }
      return false;
    };

    let p = from;
    const aligned = from + ((4 - ((data.byteOffset + from) & 3)) & 3);
    for (const headEnd = Math.min(lastStart + 1, aligned); p < headEnd; p++)
      if (filter[Math.imul(key4(data, p), GOLDEN) >>> fShift] !== 0) found[count++] = p;

    const words = (to - aligned) >> 2;
    // Short inputs (header lines, small bodies) skip the word view: creating it costs more than it saves.
    if (LITTLE_ENDIAN && p === aligned && words >= 64) {
      const u32 = new Uint32Array(data.buffer, data.byteOffset + aligned, words);
      let v0 = u32[0]!;
      for (let k = 0; k < words - 1;) {
        const kEnd = Math.min(words - 1, k + ((cap - count) >> 2));
        for (; k < kEnd; k++) {
          const v1 = u32[k + 1]!;
          const at = aligned + (k << 2);
          if (filter[Math.imul(v0, GOLDEN) >>> fShift] !== 0) found[count++] = at;
          if (filter[Math.imul((v0 >>> 8) | (v1 << 24), GOLDEN) >>> fShift] !== 0) found[count++] = at + 1;
          if (filter[Math.imul((v0 >>> 16) | (v1 << 16), GOLDEN) >>> fShift] !== 0) found[count++] = at + 2;
          if (filter[Math.imul((v0 >>> 24) | (v1 << 8), GOLDEN) >>> fShift] !== 0) found[count++] = at + 3;
          if (v1 === v0) break;
          v0 = v1;
        }
        if (k < kEnd) {
          // Word k repeats (padding, a run of one character): along a run of it, every
          // window is one of the four just tested. None a key (the filter's false
          // positives dropped): skip the run. (Handled out here: a nested loop inside
          // the word loop slows it by a third.)
          const atWord = aligned + (k << 2);
          let keys = false;
          for (let c = count - 1; c >= 0 && found[c]! >= atWord && !keys; c--) keys = this.get(key4(data, found[c]!)) !== undefined;
          let j = k + 1;
          if (!keys) {
            while (count > 0 && found[count - 1]! >= atWord) count--;
            while (j < kEnd && u32[j + 1] === v0) j++;
          }
          k = j;
          continue;
        }
        if (count > 0 && flush()) return;
      }
      p = aligned + ((words - 1) << 2);
    }
    for (; p <= lastStart; p++) {
      if (filter[Math.imul(key4(data, p), GOLDEN) >>> fShift] !== 0) found[count++] = p;
      if (count >= cap && flush()) return;
    }
    if (count > 0) flush();
  }
}
