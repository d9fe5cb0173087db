// Values joined in order: a secret split across two JSON string fields, two
// headers, two query parameters or two form fields is whole again once the
// values are put side by side. Only windows around the places where joining can
// make a new match are kept (see joinedWindows), so ordinary documents cost a
// copy and one index pass over their values. Pure and bounded.
import { Buffer } from 'node:buffer';
import { jsonUnescape, nextByte } from './decode.ts';
import { GOLDEN } from './prefix-index.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const NEWLINE = 0x0a;

/** Levels of JSON inside JSON strings whose values are extracted (tool-call arguments are one). */
export const MAX_JSON_NESTING = 2;

function isJsonSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** What may follow an array's `[` in JSON: a value's first byte, `]` or whitespace. */
const ARRAY_NEXT = new Uint8Array(256);
for (const c of '"{[]-0123456789tfn \t\r\n') ARRAY_NEXT[c.charCodeAt(0)] = 1;

/** Whether `src` starts (after whitespace) like a JSON object or array (not a Markdown `[link]`). */
export function looksLikeJson(src: Uint8Array): boolean {
  let i = 0;
  while (i < src.length && i < 64 && isJsonSpace(src[i])) i++;
  return src[i] === 0x7b || (src[i] === 0x5b && (i + 1 === src.length || ARRAY_NEXT[src[i + 1]!] === 1));
}

/**
 * The string values of JSON text in document order, keys left out: flat
 * [start, end) pairs of the raw (still escaped) content between the quotes.
 * Values that are themselves JSON (`"arguments":"{\"a\":\"...\"}"`, escaped) are
 * also listed in `nested`, for the caller to unescape and treat as JSON of their
 * own. Tolerant: malformed JSON yields the strings found before the damage.
 * Offsets rather than views: a Buffer per value would cost more than the walk.
 */
export function jsonStringValues(src: Buffer): { spans: number[]; nested: number[] } {
  const spans: number[] = [];
  const nested: number[] = [];
  const n = src.length;
  let i = 0;
  while (i < n) {
    const open = nextByte(src, QUOTE, i);
    if (open < 0) break;
    let close = -1;
    let escaped = false;
    for (let from = open + 1; ;) {
      const q = nextByte(src, QUOTE, from);
      if (q < 0) return { spans, nested }; // unterminated
      let k = q - 1;
      while (k > open && src[k] === BACKSLASH) k--;
      if (((q - 1 - k) & 1) === 0) {
        close = q;
        break;
      }
      escaped = true;
      from = q + 1;
    }
    let j = close + 1;
    while (j < n && isJsonSpace(src[j])) j++;
    if (src[j] !== COLON) {
      spans.push(open + 1, close);
      if (escaped && looksLikeJsonAt(src, open + 1, close)) nested.push(open + 1, close);
    }
    i = close + 1;
  }
  return { spans, nested };
}

function looksLikeJsonAt(src: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && i < start + 64 && isJsonSpace(src[i])) i++;
  return i < end && (src[i] === 0x7b || src[i] === 0x5b);
}

/** A nested JSON value unescaped (see jsonStringValues). */
export function unescapeNested(src: Buffer, start: number, end: number): Buffer {
  const value = src.subarray(start, end);
  return jsonUnescape(value) ?? value;
}

/**
 * Parameter values of a query string or form body (`a=1&b=2;c=3`), raw (still
 * percent-encoded), in order, as flat [start, end) pairs. A URL contributes
 * only what follows its first `?` (up to a `#`).
 */
export function paramValues(src: Buffer, isUrl: boolean): number[] {
  let start = 0;
  let end = src.length;
  if (isUrl) {
    const q = src.indexOf(0x3f);
    if (q < 0) return [];
    start = q + 1;
    const hash = src.indexOf(0x23, start);
    if (hash >= 0) end = hash;
  }
  const out: number[] = [];
  let p = start;
  while (p < end) {
    let e = p;
    let eq = -1;
    for (; e < end && src[e] !== 0x26 && src[e] !== 0x3b; e++) if (eq < 0 && src[e] === 0x3d) eq = e;
    const s = eq >= 0 ? eq + 1 : p;
    if (e > s) out.push(s, e);
    p = e + 1;
  }
  return out;
}

/** Whitespace, raw or JSON-escaped (\n \r \t). */
function isSpaceAt(v: Uint8Array, i: number, end: number): boolean {
  const b = v[i]!;
  if (b <= 0x20) return true;
  if (b !== BACKSLASH || i + 1 >= end) return false;
  const c = v[i + 1];
  return c === 0x6e || c === 0x72 || c === 0x74;
}

function hasSpace(v: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (isSpaceAt(v, i, to)) return true;
  return false;
}

/** Where rule literals' 4-byte heads and secret forms' 4-byte prefixes start; ascending. */
export interface KeyHits {
  rules: number[];
  secrets: number[];
}

/**
 * What the prefix index says of a 4-byte key: its filter (a key whose slot,
 * `Math.imul(key, GOLDEN) >>> shift`, is 0 is not in the index), and `kinds`, the
 * RULE_KEY | SECRET_KEY bits (0: neither).
 */
export interface KeyKinds {
  readonly filter: { readonly slots: Uint8Array; readonly shift: number };
  kinds(key: number): number;
}
export const RULE_KEY = 1;
export const SECRET_KEY = 2;

export interface JoinOptions {
  /** Longest secret form: how far past a prefix a secret reaches (0: no secrets). */
  secretReach: number;
  /** Longest credential token considered: how far past a literal a rule match reaches. */
  ruleReach: number;
  /** Bytes of the literal's own value kept before it (what a rule's lookbehind checks). */
  context: number;
}

export interface JoinedWindows {
  /** Windows for exact secret matching: from each prefix that comes within reach of a junction, `secretReach` bytes on. */
  secrets: Buffer | null;
  /**
   * Windows for credential rules: from each literal whose whitespace-free run
   * reaches a junction, one window ending at each following value end, through
   * whitespace-free values only and up to the next value that begins with a
   * literal, so a rule's boundary checks see exactly the pieces. Prose values
   * never join: gluing one onto a token that falls short of a format's minimum
   * length would make the rule fire. 'limit' when they would pass their cap.
   */
  rules: Buffer | null | 'limit';
}

/** Shortest window worth matching: shorter than any credential or fingerprinted secret. */
const MIN_WINDOW = 8;
/** Windows ending at a value end emitted for one rule literal at most (then one over the rest of the run). */
const MAX_WINDOWS_PER_LITERAL = 64;
/**
 * Rule windows may total this many times the joined text (plus MIN_RULE_WINDOW_CAP)
 * before joining gives up and the scan reports its limit: only text crafted to
 * have a literal at almost every junction comes near it.
 */
const MAX_RULE_WINDOW_FACTOR = 16;
const MIN_RULE_WINDOW_CAP = 64 * 1024;

/**
 * Joins the values `spans` (flat [start, end) pairs, ascending, of `source`) in
 * order, nothing between them, and keeps only what joining can reveal: windows
 * around rule literals and secret prefixes that lie within reach of a junction
 * between two values. A match inside one value was already seen in `source`, so
 * ordinary documents yield no windows at all.
 *
 * `hits` are the key positions in `source` (its own scan found them); keys that
 * straddle a junction are found here with `kinds`, one rolling 4-byte check for
 * each of the first three bytes past a junction. Output is bounded by the hits
 * times the reach.
 */
export function joinedWindows(source: Buffer, spans: readonly number[], hits: KeyHits, kinds: KeyKinds, opts: JoinOptions): JoinedWindows {
  const n = spans.length >> 1;
  if (n < 2) return { secrets: null, rules: null };
  const starts = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) starts[i + 1] = starts[i]! + spans[2 * i + 1]! - spans[2 * i]!;
  const text: JoinedText = { source, spans, starts };
  const joined = mapHits(text, hits, kinds);
  const rules = ruleWindows(text, joined.rules, opts);
  return { secrets: opts.secretReach > 0 ? secretWindows(text, joined.secrets, opts.secretReach) : null, rules };
}

/** The joined text, addressed without building it. */
interface JoinedText {
  readonly source: Buffer;
  readonly spans: readonly number[];
  /** starts[i]: where value i begins in the joined text; starts[n]: its length. */
  readonly starts: Int32Array;
}

/** Index of the value holding joined position `p` (binary search). */
function valueAt(starts: Int32Array, p: number): number {
  let lo = 0;
  let hi = starts.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= p) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Hits in joined coordinates: the source's hits that fall inside a value, and
 * keys straddling a junction (the rolling last four bytes of the joined text
 * after each of the first three bytes past it). Ascending.
 */
function mapHits(text: JoinedText, hits: KeyHits, kinds: KeyKinds): KeyHits {
  const { source: src, spans, starts } = text;
  const out: KeyHits = { rules: [], secrets: [] };
  const { slots, shift } = kinds.filter;
  let r = 0;
  let s = 0;
  let roll = 0;
  let seen = 0;
  for (let i = 0; i < starts.length - 1; i++) {
    const vs = spans[2 * i]!;
    const ve = spans[2 * i + 1]!;
    // Keys straddling the junction before value i start 3, 2 or 1 bytes before it.
    const head = Math.min(3, ve - vs);
    for (let k = 0; k < head; k++) {
      roll = (roll >>> 8) | (src[vs + k]! << 24);
      if (++seen >= 4 && i > 0 && slots[Math.imul(roll, GOLDEN) >>> shift] !== 0) {
        const kind = kinds.kinds(roll);
        if (kind !== 0) {
          const at = starts[i]! + k - 3;
          if (kind & RULE_KEY) out.rules.push(at);
          if (kind & SECRET_KEY) out.secrets.push(at);
        }
      }
    }
    if (ve - vs >= 4) {
      roll = src[ve - 4]! | (src[ve - 3]! << 8) | (src[ve - 2]! << 16) | (src[ve - 1]! << 24);
      seen = Math.max(seen, 4);
    }
    // Keys wholly inside the value, from the source's own scan.
    while (r < hits.rules.length && hits.rules[r]! < ve) {
      if (hits.rules[r]! >= vs) out.rules.push(starts[i]! + hits.rules[r]! - vs);
      r++;
    }
    while (s < hits.secrets.length && hits.secrets[s]! < ve) {
      if (hits.secrets[s]! >= vs) out.secrets.push(starts[i]! + hits.secrets[s]! - vs);
      s++;
    }
  }
  out.rules.sort((a, b) => a - b);
  out.secrets.sort((a, b) => a - b);
  return out;
}

function secretWindows(text: JoinedText, hits: readonly number[], reach: number): Buffer | null {
  const starts = text.starts;
  const last = starts.length - 2;
  const total = starts[last + 1]!;
  const windows: Array<[number, number]> = [];
  for (const p of hits) {
    const i = valueAt(starts, p);
    if (i === last || starts[i + 1]! - p >= reach) continue; // no junction within reach
    const e = Math.min(total, p + reach);
    const prev = windows[windows.length - 1];
    if (prev && p <= prev[1]) prev[1] = Math.max(prev[1], e);
    else windows.push([p, e]);
  }
  return emit(text, windows);
}

function ruleWindows(text: JoinedText, hits: readonly number[], o: JoinOptions): Buffer | null | 'limit' {
  const { source: src, spans, starts } = text;
  const last = starts.length - 2;
  // A value holding a literal holds a token of its own (no format's token contains
  // another's literal): windows stop before it, which keeps a list of token-like
  // values from costing a window per pair of them.
  const hasLiteral = new Uint8Array(last + 1);
  for (const p of hits) hasLiteral[valueAt(starts, p)] = 1;
  const windows: Array<[number, number]> = [];
  let size = 0;
  const cap = MAX_RULE_WINDOW_FACTOR * starts[last + 1]! + MIN_RULE_WINDOW_CAP;
  for (const p of hits) {
    const i = valueAt(starts, p);
    const end = starts[i + 1]!;
    const vs = spans[2 * i]!;
    // The token must run whitespace-free from the literal to the junction.
    if (i === last || end - p >= o.ruleReach || hasSpace(src, vs + p - starts[i]!, spans[2 * i + 1]!)) continue;
    const from = Math.max(starts[i]!, p - o.context);
    // One window ending at each of the next value ends, then one over the whole
    // whitespace-free run within reach (a token in more pieces than that).
    let runEnd = end;
    let count = 0;
    for (let j = i + 1; j <= last && hasLiteral[j] === 0; j++) {
      const e = Math.min(starts[j + 1]!, p + o.ruleReach);
      const js = spans[2 * j]!;
      if (hasSpace(src, js, js + e - starts[j]!)) break;
      runEnd = e;
      if (count < MAX_WINDOWS_PER_LITERAL && e - from >= MIN_WINDOW) {
        windows.push([from, e]);
        size += e - from;
        count++;
      }
      if (e === p + o.ruleReach) break;
    }
    if (count === MAX_WINDOWS_PER_LITERAL && runEnd > windows[windows.length - 1]![1]) {
      windows.push([from, runEnd]);
      size += runEnd - from;
    }
    if (size > cap) return 'limit';
  }
  return emit(text, windows);
}

/** The windows' bytes (copied out of the values they span), separated by newlines so that they cannot fuse. */
function emit(text: JoinedText, windows: ReadonlyArray<readonly [number, number]>): Buffer | null {
  if (windows.length === 0) return null;
  const { source, spans, starts } = text;
  let size = windows.length - 1;
  for (const [s, e] of windows) size += e - s;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [s, e] of windows) {
    if (at > 0) out[at++] = NEWLINE;
    for (let i = valueAt(starts, s), p = s; p < e; i++) {
      const from = spans[2 * i]! + (p - starts[i]!);
      const to = spans[2 * i]! + (Math.min(e, starts[i + 1]!) - starts[i]!);
      at += source.copy(out, at, from, to);
      p = starts[i + 1]!;
    }
  }
  return out;
}
