// A set of 4-byte keys searched in one pass over a buffer. Both the rule
// literals and the secret fingerprints' prefixes live in one index, so a layer
// is read once whatever the number of rules and secrets.
//
// The hot loop keeps the last four bytes as an int32 and tests a one-byte-per-slot
// filter addressed by a multiplicative hash of it; only filter hits (rare) reach
// the Map. A 4-byte window needs no per-position allocation or string work.

/** The four bytes at `offset` as a big-endian int32 (the form the scan loop builds). */
export function key4(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
}

/** The first four characters of a latin1 string as a key (characters above 0xff are not representable). */
export function key4OfLatin1(s: string): number {
  if (s.length < 4) throw new RangeError(`a prefix key needs 4 characters, got ${s.length}`);
  return (s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3);
}

const GOLDEN = 0x9e3779b1 | 0;

export class Prefix4Index<T> {
  readonly #filter: Uint8Array;
  readonly #shift: number;
  readonly #map: Map<number, T[]>;

  constructor(entries: Iterable<readonly [number, T]>) {
    const map = new Map<number, T[]>();
    for (const [k, v] of entries) {
      const list = map.get(k | 0);
      if (list) list.push(v);
      else map.set(k | 0, [v]);
    }
    // About 64 filter slots per key keeps false filter hits near 1.5 % of
    // positions; 2^18 slots (256 KiB) is the ceiling so the filter stays in L2.
    const bits = Math.min(18, Math.max(10, Math.ceil(Math.log2(Math.max(1, map.size) * 64))));
    this.#shift = 32 - bits;
    this.#filter = new Uint8Array(1 << bits);
    for (const k of map.keys()) this.#filter[Math.imul(k, GOLDEN) >>> this.#shift] = 1;
    this.#map = map;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: number): readonly T[] | undefined {
    return this.#map.get(key | 0);
  }

  keys(): IterableIterator<number> {
    return this.#map.keys();
  }

  /**
   * Calls `onHit(start, values)` for every offset in [from, to - 4] whose four
   * bytes are a key, in increasing order. `onHit` returning true stops the scan.
   */
  scan(data: Uint8Array, onHit: (start: number, values: readonly T[]) => boolean | void, from = 0, to = data.length): void {
    if (this.#map.size === 0 || to - from < 4) return;
    const filter = this.#filter;
    const shift = this.#shift;
    const map = this.#map;
    let w = (data[from]! << 16) | (data[from + 1]! << 8) | data[from + 2]!;
    for (let i = from + 3; i < to; i++) {
      w = (w << 8) | data[i]!;
      if (filter[Math.imul(w, GOLDEN) >>> shift] !== 0) {
        const values = map.get(w);
        if (values !== undefined && onHit(i - 3, values) === true) return;
      }
    }
  }
}
