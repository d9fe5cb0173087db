// The decoding layers the leak scanner looks through. Each function is pure and
// bounded: output is never larger than its input except decompression, which
// always runs with an explicit output cap.
import { isAscii, isUtf8 } from 'node:buffer';
import {
  brotliDecompressSync,
  gunzipSync,
  inflateRawSync,
  inflateSync,
  zstdDecompressSync,
  type ZlibOptions,
  type BrotliOptions,
  type ZstdOptions,
} from 'node:zlib';

const HEX_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_VALUE[0x41 + i] = 10 + i;
  HEX_VALUE[0x61 + i] = 10 + i;
}

const PERCENT = 0x25;
const PLUS = 0x2b;
const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;

/** Windows of a layer to decode: everything, or merged [start, end) ranges around escapes. */
export type Windows = 'all' | Array<[number, number]>;

/**
 * Where a text transform can change anything: every valid escape (found by
 * `marker` and confirmed by `escapeLength`) widened by `margin` bytes each side,
 * merged. A match that involves a decoded escape lies within `margin` of it, so
 * decoding only these windows finds everything decoding the whole layer would,
 * for matches no longer than `margin`. Returns null when there is no valid escape,
 * 'all' once the windows cover half the layer (decoding everything is then cheaper).
 */
export function escapeWindows(
  src: Uint8Array,
  markers: readonly number[],
  escapeLength: (src: Uint8Array, at: number) => number,
  margin: number,
): Windows | null {
  const buf = asBuffer(src);
  const n = buf.length;
  // Most layers have no escape at all: answer that without allocating.
  let any = false;
  for (const marker of markers) if (buf.indexOf(marker) >= 0) any = true;
  if (!any) return null;
  const lists: Array<Array<[number, number]>> = [];
  for (const marker of markers) {
    const list: Array<[number, number]> = [];
    let covered = 0;
    for (let p = buf.indexOf(marker); p >= 0; p = nextByte(buf, marker, p + 1)) {
      const len = escapeLength(buf, p);
      if (len === 0) continue;
      const s = Math.max(0, p - margin);
      const e = Math.min(n, p + len + margin);
      const last = list[list.length - 1];
      if (last && s <= last[1]) {
        covered += e - last[1];
        last[1] = e;
      } else {
        list.push([s, e]);
        covered += e - s;
      }
      if (covered * 2 >= n) return 'all';
    }
    if (list.length > 0) lists.push(list);
  }
  if (lists.length === 0) return null;
  const all = lists.flat().sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  let covered = 0;
  for (const [s, e] of all) {
    const last = merged[merged.length - 1];
    if (last && s <= last[1]) {
      if (e > last[1]) {
        covered += e - last[1];
        last[1] = e;
      }
    } else {
      merged.push([s, e]);
      covered += e - s;
    }
  }
  return covered * 2 >= n ? 'all' : merged;
}

/** Bytes searched one by one before handing over to a native search (a call costs more than this many): most gaps are short. */
const SHORT_SEARCH = 32;

/**
 * The next `byte` at or after `from` (-1 if none): buf.indexOf, quicker where the
 * byte is dense (JSON strings and gaps, escaped JSON inside JSON: a backslash every few bytes).
 */
export function nextByte(buf: Buffer, byte: number, from: number): number {
  const stop = Math.min(buf.length, from + SHORT_SEARCH);
  for (let i = from; i < stop; i++) if (buf[i] === byte) return i;
  return stop < buf.length ? buf.indexOf(byte, stop) : -1;
}

type SegmentDecoder = (src: Uint8Array, start: number, end: number, out: Buffer, at: number) => number;

/** Decodes the windows of `src` with `decode`, joining separate windows with a newline so tokens cannot fuse across gaps. */
export function decodeWindows(src: Uint8Array, windows: Windows, decode: SegmentDecoder): Buffer {
  if (windows === 'all') {
    const out = Buffer.allocUnsafe(src.length);
    return out.subarray(0, decode(src, 0, src.length, out, 0));
  }
  let size = windows.length;
  for (const [s, e] of windows) size += e - s;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [s, e] of windows) {
    if (at > 0) out[at++] = NEWLINE;
    at = decode(src, s, e, out, at);
  }
  return out.subarray(0, at);
}

// ---------------------------------------------------------------- percent

export function percentEscapeLength(src: Uint8Array, at: number): number {
  return src[at] === PERCENT && at + 2 < src.length && HEX_VALUE[src[at + 1]!]! >= 0 && HEX_VALUE[src[at + 2]!]! >= 0 ? 3 : 0;
}

function formEscapeLength(src: Uint8Array, at: number): number {
  return src[at] === PLUS ? 1 : percentEscapeLength(src, at);
}

function percentSegment(plusAsSpace: boolean): SegmentDecoder {
  return (src, start, end, out, at) => {
    for (let i = start; i < end; i++) {
      const b = src[i]!;
      if (b === PERCENT && i + 2 < end) {
        const hi = HEX_VALUE[src[i + 1]!]!;
        const lo = HEX_VALUE[src[i + 2]!]!;
        if (hi >= 0 && lo >= 0) {
          out[at++] = (hi << 4) | lo;
          i += 2;
          continue;
        }
      }
      out[at++] = plusAsSpace && b === PLUS ? 0x20 : b;
    }
    return at;
  };
}

const percentPlain = percentSegment(false);
const percentForm = percentSegment(true);

/** %XX decoding (and `+` as space when `plusAsSpace`, as in form bodies and queries); null when nothing would change. */
export function percentDecode(src: Uint8Array, plusAsSpace: boolean, margin = Infinity): Buffer | null {
  const windows = plusAsSpace
    ? escapeWindows(src, [PERCENT, PLUS], formEscapeLength, margin)
    : escapeWindows(src, [PERCENT], percentEscapeLength, margin);
  return windows === null ? null : decodeWindows(src, windows, plusAsSpace ? percentForm : percentPlain);
}

// ---------------------------------------------------------------- JSON string escapes

/** Length of the escape at `at` (\" \\ \/ \b \f \n \r \t \uXXXX, and \xNN as in JS and Python), 0 if none. */
export function jsonEscapeLength(src: Uint8Array, at: number): number {
  if (src[at] !== BACKSLASH || at + 1 >= src.length) return 0;
  switch (src[at + 1]) {
    case 0x22: // "
    case 0x5c: // \
    case 0x2f: // /
    case 0x62: // b
    case 0x66: // f
    case 0x6e: // n
    case 0x72: // r
    case 0x74: // t
      return 2;
    case 0x75: // u
      return at + 5 < src.length && isHex(src, at + 2, 4) ? 6 : 0;
    case 0x78: // x
      return at + 3 < src.length && isHex(src, at + 2, 2) ? 4 : 0;
    default:
      return 0;
  }
}

function isHex(src: Uint8Array, at: number, count: number): boolean {
  for (let i = 0; i < count; i++) if (HEX_VALUE[src[at + i]!]! < 0) return false;
  return true;
}

function hexAt(src: Uint8Array, at: number, count: number): number {
  let v = 0;
  for (let i = 0; i < count; i++) v = (v << 4) | HEX_VALUE[src[at + i]!]!;
  return v;
}

function writeUtf8(out: Buffer, at: number, cp: number): number {
  if (cp < 0x80) out[at++] = cp;
  else if (cp < 0x800) {
    out[at++] = 0xc0 | (cp >> 6);
    out[at++] = 0x80 | (cp & 63);
  } else if (cp < 0x10000) {
    out[at++] = 0xe0 | (cp >> 12);
    out[at++] = 0x80 | ((cp >> 6) & 63);
    out[at++] = 0x80 | (cp & 63);
  } else {
    out[at++] = 0xf0 | (cp >> 18);
    out[at++] = 0x80 | ((cp >> 12) & 63);
    out[at++] = 0x80 | ((cp >> 6) & 63);
    out[at++] = 0x80 | (cp & 63);
  }
  return at;
}

const SIMPLE_ESCAPE: Record<number, number> = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9 };

/** Gaps shorter than this between escapes are copied byte by byte; longer ones with one native copy. */
const BULK_COPY_MIN = 48;

const jsonSegment: SegmentDecoder = (src, start, end, out, at) => {
  const buf = asBuffer(src);
  let i = start;
  while (i < end) {
    // Copy up to the next backslash: natively when it is far (sparse escapes, as in
    // the second round of nested JSON), byte by byte when it is near.
    let j = i;
    const probeEnd = Math.min(end, i + BULK_COPY_MIN);
    while (j < probeEnd && buf[j] !== BACKSLASH) out[at++] = buf[j++]!;
    if (j === probeEnd && j < end) {
      const next = buf.indexOf(BACKSLASH, j);
      const stop = next < 0 || next > end ? end : next;
      at += buf.copy(out, at, j, stop);
      j = stop;
    }
    if (j >= end) break;
    // buf[j] is a backslash.
    i = j + 1;
    if (i >= end) {
      out[at++] = BACKSLASH;
      break;
    }
    const c = buf[i]!;
    const simple = SIMPLE_ESCAPE[c];
    if (simple !== undefined) {
      out[at++] = simple;
      i += 1;
    } else if (c === 0x75 && i + 4 < end && isHex(buf, i + 1, 4)) {
      let cp = hexAt(buf, i + 1, 4);
      i += 5;
      // A surrogate pair spelled as two escapes is one code point.
      if (cp >= 0xd800 && cp <= 0xdbff && i + 5 < end && buf[i] === BACKSLASH && buf[i + 1] === 0x75 && isHex(buf, i + 2, 4)) {
        const lo = hexAt(buf, i + 2, 4);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i += 6;
        }
      }
      at = writeUtf8(out, at, cp);
    } else if (c === 0x78 && i + 2 < end && isHex(buf, i + 1, 2)) {
      out[at++] = hexAt(buf, i + 1, 2);
      i += 3;
    } else {
      out[at++] = BACKSLASH; // not an escape: keep the backslash, the next byte is copied as text
    }
  }
  return at;
};

/** Unescaping rounds applied at most: JSON inside a JSON string (tool-call arguments) is escaped twice. */
export const MAX_JSON_ROUNDS = 3;

/**
 * Escapes that can turn into a character of a credential token: \/ (PHP and
 * others escape every slash), \uXXXX and \xNN. The others (\" \\ \n \r \t \b \f)
 * decode to characters no credential format contains, and which a secret value
 * contains only if fingerprintSecret gave it a 'json' form.
 */
export function revealingJsonEscapeLength(src: Uint8Array, at: number): number {
  const c = src[at + 1];
  return c === 0x2f || c === 0x75 || c === 0x78 ? jsonEscapeLength(src, at) : 0;
}

/**
 * JSON string unescaping (plus \xNN), repeated while escapes remain, up to
 * MAX_JSON_ROUNDS, so nested JSON costs one layer rather than one per level;
 * null when nothing would change. With `revealingOnly`, windows are placed only
 * around revealing escapes (see revealingJsonEscapeLength); everything inside a
 * window is still fully unescaped.
 */
export function jsonUnescape(src: Uint8Array, margin = Infinity, revealingOnly = false): Buffer | null {
  const windows = escapeWindows(src, [BACKSLASH], revealingOnly ? revealingJsonEscapeLength : jsonEscapeLength, margin);
  if (windows === null) return null;
  let out = decodeWindows(src, windows, jsonSegment);
  for (let round = 1; round < MAX_JSON_ROUNDS && hasEscape(out, BACKSLASH, jsonEscapeLength); round++) {
    out = decodeWindows(out, 'all', jsonSegment);
  }
  return out;
}

function hasEscape(buf: Buffer, marker: number, escapeLength: (src: Uint8Array, at: number) => number): boolean {
  for (let p = buf.indexOf(marker); p >= 0; p = nextByte(buf, marker, p + 1)) if (escapeLength(buf, p) > 0) return true;
  return false;
}

// ---------------------------------------------------------------- base64 / hex runs

/** Shortest base64 or hex run decoded (12 bytes of base64, 8 of hex): shorter ones cannot hide a credential worth finding. */
export const MIN_ENCODED_RUN = 16;

export type CompressionFormat = 'gzip' | 'deflate' | 'zstd';

export type RunEncoding = 'base64' | 'base64url' | 'hex' | 'base32';

/** One group of decoded runs. `text` says whether the runs look like text (worth unescaping further). */
export interface DecodedGroup {
  encoding: RunEncoding;
  /** Set when the decoded runs were UTF-16 text, transcoded to UTF-8 as part of the same step. */
  utf16?: Utf16Encoding;
  text: boolean;
  bytes: Buffer;
}

export interface DecodedRuns {
  groups: DecodedGroup[];
  /** Decoded runs that start with a compression format's magic bytes. */
  compressed: Array<{ format: CompressionFormat; encoding: RunEncoding; data: Buffer }>;
  /** Bytes of decoded output produced. */
  size: number;
}

/** Whether decoded bytes look like binary data: more than 1/16 control bytes in the first 256. */
export function looksBinary(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 256);
  let control = 0;
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if ((b < 0x20 && b !== 9 && b !== 10 && b !== 13) || b === 0x7f) control++;
  }
  return control * 16 > n;
}

/** The compression format whose magic `data` starts with, if any (zlib by its header checksum). */
export function sniffCompression(data: Uint8Array): CompressionFormat | null {
  if (data.length < 4) return null;
  const [a, b, c, d] = [data[0]!, data[1]!, data[2]!, data[3]!];
  if (a === 0x1f && b === 0x8b && c === 0x08) return 'gzip';
  if (a === 0x28 && b === 0xb5 && c === 0x2f && d === 0xfd) return 'zstd';
  // zlib: CM=8, a 32 KiB window and the header checksum; FDICT unset (no preset dictionary).
  if (a === 0x78 && (b & 0x20) === 0 && ((a << 8) | b) % 31 === 0) return 'deflate';
  return null;
}

/**
 * Finds runs of base64 / base64url characters (at least MIN_ENCODED_RUN long, with
 * MIME/PEM line breaks allowed after lines whose length is a multiple of 4), runs
 * of hex digits inside them and single-line runs that are base32 (RFC 4648, one
 * case throughout), and decodes each. Decoded runs are grouped by encoding and by
 * whether they look like text, each group joined with newlines; a decoded run that
 * is UTF-16 text is also transcoded to UTF-8 (see utf16Decode). `text`: the
 * layer's latin1 view, if the caller keeps one.
 */
export function decodeRuns(src: Uint8Array, text?: Latin1View): DecodedRuns {
  const found: FoundRuns = { b64: [], hex: [], b32: [] };
  findRuns(src, found);
  const buf = asBuffer(src);
  return decodeFound(buf, found, text ?? new Latin1View(buf));
}

/** [start, end) pairs per encoding. */
interface FoundRuns {
  /** Triples: start, end, 1 if the run is a single line (base64 characters, then any '=' padding). */
  b64: number[];
  hex: number[];
  b32: number[];
}

const B64_BIT = 1;
const HEX_BIT = 2;
/** Base32 in upper case (A-Z, 2-7), in lower case (a-z, 2-7), and anything but the digits 2-7. */
const B32U_BIT = 4;
const B32L_BIT = 8;
const NOT_B32_DIGIT_BIT = 16;
/**
 * Class bits of a byte pair (little-endian 16-bit value): each set when both
 * bytes have it, so AND-ing the pairs of a run gives the run's classes.
 */
const PAIR_CLASS = new Uint8Array(65536);
{
  const one = new Uint8Array(256).fill(NOT_B32_DIGIT_BIT);
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_') one[c.charCodeAt(0)]! |= B64_BIT;
  for (const c of '0123456789abcdefABCDEF') one[c.charCodeAt(0)]! |= HEX_BIT;
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567') one[c.charCodeAt(0)]! |= B32U_BIT;
  for (const c of 'abcdefghijklmnopqrstuvwxyz234567') one[c.charCodeAt(0)]! |= B32L_BIT;
  for (const c of '234567') one[c.charCodeAt(0)]! &= ~NOT_B32_DIGIT_BIT;
  for (let v = 0; v < 65536; v++) PAIR_CLASS[v] = one[v & 255]! & one[v >> 8]!;
}
const BYTE_CLASS = new Uint8Array(256);
for (let b = 0; b < 256; b++) BYTE_CLASS[b] = PAIR_CLASS[b | (b << 8)]!;
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Appends [start, end) pairs of the maximal base64-class runs of `src` that are
 * at least MIN_ENCODED_RUN long to `out` (lines of a wrapped block join; up to
 * two '=' of padding are included), and the hex runs inside them to `hexOut`.
 *
 * A run of 16 bytes covers at least three whole aligned 32-bit words, so only
 * every third word needs testing (both halves through PAIR_CLASS), and a hit
 * is only followed byte by byte when neighbouring words could make it 16 long:
 * prose and JSON are skipped 12 bytes at a time.
 */
function findRuns(src: Uint8Array, found: FoundRuns): void {
  const MIN = MIN_ENCODED_RUN;
  const to = src.length;
  if (to < MIN) return;
  const aligned = (4 - (src.byteOffset & 3)) & 3;
  const words = IS_LITTLE_ENDIAN ? (to - aligned) >> 2 : 0;
  let lastEnd = 0;
  if (words < 64) {
    // Big-endian hosts, or short inputs (a word view costs more than it saves): probe every MIN-th byte.
    for (let i = MIN - 1; i < to;)
      if ((BYTE_CLASS[src[i]!]! & B64_BIT) === 0) i += MIN;
      else i = (lastEnd = extendRun(src, i, lastEnd, found, null, 0)) + MIN;
    return;
  }
  const u32 = new Uint32Array(src.buffer, src.byteOffset + aligned, words);
  // Words 0 and 1 need no probe: a run whose three whole words include neither
  // word 2 nor a later probe would fit in 8 bytes plus 3 head bytes.
  for (let k = 2; k < words;) {
    if (!wholeWord(u32, k)) {
      k += 3;
      continue;
    }
    // A run of 16 holding whole word k extends >= 12 bytes beyond it: whole words
    // k-1 and k+1, or k-2 and k-1, or k+1 and k+2. Most tokens in text fail this.
    const prev = wholeWord(u32, k - 1);
    const next = k + 1 < words && wholeWord(u32, k + 1);
    const at = aligned + (k << 2);
    const possible = (prev && (next || wholeWord(u32, k - 2))) || (next && k + 2 < words && wholeWord(u32, k + 2));
    if (!possible || at < lastEnd) {
      k += 3;
      continue;
    }
    lastEnd = extendRun(src, at, lastEnd, found, u32, aligned);
    // Next probe: the first word starting at or after the run (a run can follow '=' padding directly).
    k = Math.max(k + 1, (lastEnd - aligned + 3) >> 2);
  }
}

function wholeWord(u32: Uint32Array, k: number): boolean {
  const v = u32[k]!;
  return (PAIR_CLASS[v & 0xffff]! & PAIR_CLASS[v >>> 16]! & B64_BIT) !== 0;
}

/**
 * Records the maximal base64-class run through `probe` (not reaching below
 * `lastEnd`) if it is long enough, and the hex runs inside it; returns where the
 * next run may start. Wrapped lines join and up to two '=' of padding are included.
 */
function extendRun(src: Uint8Array, probe: number, lastEnd: number, found: FoundRuns, u32: Uint32Array | null, aligned: number): number {
  const MIN = MIN_ENCODED_RUN;
  const to = src.length;
  let s = probe;
  let classes = BYTE_CLASS[src[probe]!]!;
  while (s > lastEnd && (BYTE_CLASS[src[s - 1]!]! & B64_BIT) !== 0) classes &= BYTE_CLASS[src[--s]!]!;
  let e = classEnd(src, probe + 1, to, B64_BIT, u32, aligned);
  // The classes every byte of the first line has (it is the whole run unless lines follow).
  classes &= runClasses;
  let lineStart = s;
  let chars = e - s;
  // Continue over line breaks of wrapped base64 (MIME 76, PEM 64 columns), also
  // when JSON-escaped (\n, \\r\\n): decodeFound strips those.
  while (e - lineStart >= MIN && (e - lineStart) % 4 === 0 && e < to) {
    let f = e;
    for (let breaks = 0; breaks < 4 && f < to; breaks++) {
      const c = src[f];
      if (c === 10 || c === 13) {
        f++;
        continue;
      }
      if (c !== BACKSLASH) break;
      let g = f + 1;
      if (g < to && src[g] === BACKSLASH) g++;
      if (g >= to || (src[g] !== 0x6e && src[g] !== 0x72)) break;
      f = g + 1;
    }
    // A line starting with '-' is a MIME boundary or PEM footer, not more base64.
    if (f === e || f >= to || (BYTE_CLASS[src[f]!]! & B64_BIT) === 0 || src[f] === 0x2d) break;
    let g = f + 1;
    g = classEnd(src, g, to, B64_BIT, u32, aligned);
    chars += g - f;
    lineStart = f;
    e = g;
  }
  let end = e;
  let pad = 0;
  while (end < to && pad < 2 && src[end] === 0x3d) {
    end++;
    pad++;
  }
  if (chars >= MIN) {
    // Padding marks where the encoding ends, so a run glued to preceding word
    // characters can be realigned from its end.
    const skew = pad > 0 && lineStart === s ? (chars + pad) % 4 : 0;
    const hexOut = found.hex;
    const hexBefore = hexOut.length;
    const oneLine = lineStart === s;
    // One line of hex digits throughout is one hex run (chars >= MIN); else look for the hex runs inside.
    if (oneLine && (classes & HEX_BIT) !== 0) hexOut.push(s, e);
    else findHexRuns(src, s, e, hexOut, u32, aligned);
    // A run that is one hex run throughout is a hash or id, never base64 of anything worth decoding.
    const allHex = hexOut.length === hexBefore + 2 && hexOut[hexBefore] === s && hexOut[hexBefore + 1] === e && pad === 0;
    if (!allHex) found.b64.push(s + skew, end, oneLine ? 1 : 0);
    if (oneLine && (e - s >= MIN_BASE32_RUN || pad > 0) && isBase32(classes)) found.b32.push(s, e);
  }
  return end;
}

/**
 * The first index in [from, to) whose byte lacks class `bit` (B64_BIT or
 * HEX_BIT), or `to`. With a word view (`u32`, whose word 0 starts at `aligned`),
 * long runs (blobs, hashes, a repeated character) are crossed a word at a time.
 */
function classEnd(src: Uint8Array, from: number, to: number, bit: number, u32: Uint32Array | null, aligned: number): number {
  let e = from;
  let and = 0xff;
  if (u32 !== null && e >= aligned) {
    for (; e < to && ((e - aligned) & 3) !== 0; e++) {
      const c = BYTE_CLASS[src[e]!]!;
      if ((c & bit) === 0) break;
      and &= c;
    }
    if (e < to && ((e - aligned) & 3) === 0) {
      let k = (e - aligned) >> 2;
      const kEnd = Math.min(u32.length, (to - aligned) >> 2);
      for (; k < kEnd; k++) {
        const v = u32[k]!;
        const c = PAIR_CLASS[v & 0xffff]! & PAIR_CLASS[v >>> 16]!;
        if ((c & bit) === 0) break;
        and &= c;
      }
      e = aligned + (k << 2);
    }
  }
  for (; e < to; e++) {
    const c = BYTE_CLASS[src[e]!]!;
    if ((c & bit) === 0) break;
    and &= c;
  }
  runClasses = and;
  return e;
}

/** The class bits all bytes crossed by the last classEnd have (a second result, without allocating one). */
let runClasses = 0;

/**
 * Shortest unpadded base32 run decoded (15 bytes): shorter upper-case runs of
 * letters and digits are identifiers (an AWS access key ID is 20 such
 * characters) far more often than base32; a padded one is decoded from 16.
 */
const MIN_BASE32_RUN = 24;

const B32_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 26; i++) B32_VALUE[0x41 + i] = B32_VALUE[0x61 + i] = i;
for (let d = 2; d <= 7; d++) B32_VALUE[0x30 + d] = 24 + d;

/**
 * Whether a run whose bytes all have the class bits `classes` is base32 in one
 * case (a mixed-case run is base64) with at least one of the digits 2-7: a run of
 * letters alone is a word or an identifier far more often than base32 (which
 * lacks a digit in under 4 % of 16-character and 0.2 % of 32-character encodings).
 */
function isBase32(classes: number): boolean {
  return (classes & (B32U_BIT | B32L_BIT)) !== 0 && (classes & NOT_B32_DIGIT_BIT) === 0;
}

/** Decodes the base32 characters of src[s, e) (either case; anything else, such as '=' padding, is skipped) into `out` at `at`; returns bytes written. */
function base32WriteBytes(src: Uint8Array, s: number, e: number, out: Buffer, at: number): number {
  let bits = 0;
  let acc = 0;
  const start = at;
  let i = s;
  // Whole blocks of eight valid characters (every block of a run findRuns found) five bytes at a time.
  for (; i + 8 <= e; i += 8) {
    const a = B32_VALUE[src[i]!]!;
    const b = B32_VALUE[src[i + 1]!]!;
    const c = B32_VALUE[src[i + 2]!]!;
    const d = B32_VALUE[src[i + 3]!]!;
    const f = B32_VALUE[src[i + 4]!]!;
    const g = B32_VALUE[src[i + 5]!]!;
    const h = B32_VALUE[src[i + 6]!]!;
    const k = B32_VALUE[src[i + 7]!]!;
    if ((a | b | c | d | f | g | h | k) < 0) break;
    out[at] = (a << 3) | (b >> 2);
    out[at + 1] = ((b << 6) | (c << 1) | (d >> 4)) & 0xff;
    out[at + 2] = ((d << 4) | (f >> 1)) & 0xff;
    out[at + 3] = ((f << 7) | (g << 2) | (h >> 3)) & 0xff;
    out[at + 4] = ((h << 5) | k) & 0xff;
    at += 5;
  }
  for (; i < e; i++) {
    const v = B32_VALUE[src[i]!]!;
    if (v < 0) continue;
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  return at - start;
}

/** Base32 decoding of a string (RFC 4648 alphabet, either case, padding optional; other characters skipped). */
export function base32Decode(str: string): Buffer {
  // Characters beyond latin1 are skipped, not folded onto their low byte.
  const bytes = Buffer.from(str.replace(/[\u0100-\u{10ffff}]/gu, ''), 'latin1');
  const out = Buffer.allocUnsafe(Math.floor((bytes.length * 5) / 8));
  return out.subarray(0, base32WriteBytes(bytes, 0, bytes.length, out, 0));
}

/** Hex runs of at least MIN_ENCODED_RUN inside [start, end), probing every MIN-th byte (word view: see classEnd). */
function findHexRuns(src: Uint8Array, start: number, end: number, out: number[], u32: Uint32Array | null, aligned: number): void {
  const MIN = MIN_ENCODED_RUN;
  let lastEnd = start;
  for (let j = start + MIN - 1; j < end;) {
    if ((BYTE_CLASS[src[j]!]! & HEX_BIT) === 0) {
      j += MIN;
      continue;
    }
    let s = j;
    while (s > lastEnd && (BYTE_CLASS[src[s - 1]!]! & HEX_BIT) !== 0) s--;
    // Most probes in base64 land in a short hex stretch: follow it byte by byte until it is long enough to matter.
    let e = j + 1;
    while (e < end && e - s < MIN && (BYTE_CLASS[src[e]!]! & HEX_BIT) !== 0) e++;
    if (e - s >= MIN) e = classEnd(src, e, end, HEX_BIT, u32, aligned);
    if (e - s >= MIN) out.push(s, e);
    lastEnd = e;
    j = e + MIN;
  }
}

/**
 * Runs longer than this are decoded a piece at a time, straight from the bytes:
 * a string of a whole blob would land in V8's large-object space, several times
 * costlier to allocate than the decoding itself. A multiple of 4 (base64 quanta).
 */
const DECODE_PIECE = 32 * 1024;

function hasUrlChars(src: Buffer, s: number, e: number): boolean {
  const run = src.subarray(s, e);
  return run.indexOf(0x2d) >= 0 || run.indexOf(0x5f) >= 0;
}

/**
 * Base64 of a single-line run (base64 characters, then any '=') decoded piece by piece into `out` at `at`;
 * returns bytes written. Every piece but the last is whole quanta, so this writes
 * what decoding the run in one go would.
 */
function base64WritePieces(src: Buffer, s: number, e: number, out: Buffer, at: number): number {
  let w = 0;
  for (let p = s; p < e; p += DECODE_PIECE) w += out.write(src.toString('latin1', p, Math.min(e, p + DECODE_PIECE)), at + w, 'base64');
  return w;
}

/** Byte value of a pair of hex digits (little-endian 16-bit value of the two characters); 0x100 if either is not one. */
const HEX_PAIR = new Uint16Array(65536).fill(0x100);
for (let a = 0; a < 256; a++)
  for (let b = 0; b < 256; b++) if (HEX_VALUE[a]! >= 0 && HEX_VALUE[b]! >= 0) HEX_PAIR[a | (b << 8)] = (HEX_VALUE[a]! << 4) | HEX_VALUE[b]!;

/** Hex digits [s, e) (an even count, all hex: a run from findHexRuns) decoded into `out` at `at`; returns bytes written. */
function hexWrite(src: Uint8Array, s: number, e: number, out: Buffer, at: number): number {
  let i = s;
  let w = at;
  if (e - s >= 256) {
    // A long run (a hash list, a hex dump): eight digits in, four bytes out, through
    // unaligned 32-bit reads and writes (byte by byte costs twice as much).
    const blocks = (e - s) >> 3;
    const from = new DataView(src.buffer, src.byteOffset + s, blocks * 8);
    const to = new DataView(out.buffer, out.byteOffset + at, blocks * 4);
    for (let k = 0; k < blocks; k++) {
      const a = from.getUint32(k * 8, true);
      const b = from.getUint32(k * 8 + 4, true);
      const v = HEX_PAIR[a & 0xffff]! | (HEX_PAIR[a >>> 16]! << 8) | (HEX_PAIR[b & 0xffff]! << 16) | (HEX_PAIR[b >>> 16]! << 24);
      to.setUint32(k * 4, v, true);
    }
    i += blocks * 8;
    w += blocks * 4;
  }
  for (; i < e; i += 2) out[w++] = HEX_PAIR[src[i]! | (src[i + 1]! << 8)]!;
  return w - at;
}

const GROUP_ENCODINGS = ['base64', 'base64url', 'hex', 'base32'] as const;
const ESCAPED_LINE_BREAK = /\\{1,2}[rn]/g;

/**
 * Decodes the runs found into one buffer, then splits it by encoding and by
 * text-likeness (copying only when a layer holds more than one kind).
 */
function decodeFound(src: Buffer, found: FoundRuns, text: Latin1View): DecodedRuns {
  const out: DecodedRuns = { groups: [], compressed: [], size: 0 };
  const { b64: b64Runs, hex: hexRuns, b32: b32Runs } = found;
  if (b64Runs.length === 0 && hexRuns.length === 0 && b32Runs.length === 0) return out;
  let capacity = 0;
  for (let k = 0; k < b64Runs.length; k += 3) capacity += ((b64Runs[k + 1]! - b64Runs[k]! + 3) >> 2) * 3 + 1;
  for (let k = 0; k < hexRuns.length; k += 2) capacity += ((hexRuns[k + 1]! - hexRuns[k]!) >> 1) + 1;
  for (let k = 0; k < b32Runs.length; k += 2) capacity += Math.floor(((b32Runs[k + 1]! - b32Runs[k]!) * 5) / 8) + 1;
  const all = Buffer.allocUnsafe(capacity);
  // Per decoded run: start, end, bucket (encoding * 2 + binary).
  const parts: number[] = [];
  let utf16: Array<{ encoding: RunEncoding; utf16: Utf16Encoding; bytes: Buffer }> | undefined;
  let at = 0;
  const place = (kind: number, written: number) => {
    if (written === 0) return;
    const part = all.subarray(at, at + written);
    const format = sniffCompression(part);
    if (format !== null) out.compressed.push({ format, encoding: GROUP_ENCODINGS[kind]!, data: Buffer.from(part) });
    // Invalid UTF-8 is what decoding a word that merely looks like base64 gives: not worth unescaping or folding.
    const binary = looksBinary(part) || (!isAscii(part) && !isUtf8(part));
    if (binary) {
      // Per run, before runs are joined: a newline between runs would break the UTF-16 byte pairing.
      const t = utf16Decode(part);
      if (t !== null) (utf16 ??= []).push({ encoding: GROUP_ENCODINGS[kind]!, utf16: t.encoding, bytes: t.bytes });
    }
    parts.push(at, at + written, kind * 2 + (binary ? 1 : 0));
    at += written + 1;
    all[at - 1] = NEWLINE;
  };
  for (let k = 0; k < b64Runs.length; k += 3) {
    const s = b64Runs[k]!;
    const e = b64Runs[k + 1]!;
    if (e - s > DECODE_PIECE && b64Runs[k + 2] === 1) {
      place(hasUrlChars(src, s, e) ? 1 : 0, base64WritePieces(src, s, e, all, at));
      continue;
    }
    let run = text.slice(s, e);
    if (run.includes('\\')) run = run.replace(ESCAPED_LINE_BREAK, '');
    place(run.includes('-') || run.includes('_') ? 1 : 0, all.write(run, at, 'base64'));
  }
  for (let k = 0; k < hexRuns.length; k += 2) {
    const s = hexRuns[k]!;
    const e = hexRuns[k + 1]!;
    place(2, hexWrite(src, s, e - ((e - s) & 1), all, at));
  }
  for (let k = 0; k < b32Runs.length; k += 2) place(3, base32WriteBytes(src, b32Runs[k]!, b32Runs[k + 1]!, all, at));
  for (const t of utf16 ?? []) {
    out.groups.push({ encoding: t.encoding, utf16: t.utf16, text: true, bytes: t.bytes });
    out.size += t.bytes.length;
  }
  if (parts.length === 0) return out;
  const first = parts[2]!;
  let uniform = true;
  for (let p = 5; p < parts.length; p += 3) if (parts[p] !== first) uniform = false;
  if (uniform) {
    out.groups.push({ encoding: GROUP_ENCODINGS[first >> 1]!, text: (first & 1) === 0, bytes: all.subarray(0, at - 1) });
    out.size += at - 1;
    return out;
  }
  for (let bucket = 0; bucket < GROUP_ENCODINGS.length * 2; bucket++) {
    let size = 0;
    for (let p = 0; p < parts.length; p += 3) if (parts[p + 2] === bucket) size += parts[p + 1]! - parts[p]! + 1;
    if (size === 0) continue;
    const bytes = Buffer.allocUnsafe(size - 1);
    let w = 0;
    for (let p = 0; p < parts.length; p += 3) {
      if (parts[p + 2] !== bucket) continue;
      if (w > 0) bytes[w++] = NEWLINE;
      w += all.copy(bytes, w, parts[p]!, parts[p + 1]!);
    }
    out.groups.push({ encoding: GROUP_ENCODINGS[bucket >> 1]!, text: (bucket & 1) === 0, bytes });
    out.size += bytes.length;
  }
  return out;
}

// ---------------------------------------------------------------- UTF-16

export type Utf16Encoding = 'utf16le' | 'utf16be';

/** Fewest bytes worth transcoding: 8 characters. */
const MIN_UTF16_BYTES = 16;

/**
 * UTF-16 text (a byte-order mark, or ASCII-range text's telltale zero in every
 * other byte: three quarters of the odd bytes of the first 512 zero and under a
 * quarter of the even ones, or the reverse for big-endian) transcoded to UTF-8;
 * null when `bytes` do not look like UTF-16.
 */
export function utf16Decode(bytes: Uint8Array): { encoding: Utf16Encoding; bytes: Buffer } | null {
  if (bytes.length < MIN_UTF16_BYTES) return null;
  let le: boolean;
  let start = 0;
  if (bytes[0] === 0xff && bytes[1] === 0xfe) [le, start] = [true, 2];
  else if (bytes[0] === 0xfe && bytes[1] === 0xff) [le, start] = [false, 2];
  else {
    // Random bytes (most binary runs) fail on their first 16 bytes: six zeros of eight in one parity.
    let head = 0;
    for (let i = 0; i < 16; i += 2) head += (bytes[i] === 0 ? 1 : 0) + (bytes[i + 1] === 0 ? 16 : 0);
    if ((head & 15) < 6 && head >> 4 < 6) return null;
    const n = Math.min(bytes.length & ~1, 512);
    let zeroEven = 0;
    let zeroOdd = 0;
    for (let i = 0; i < n; i += 2) {
      if (bytes[i] === 0) zeroEven++;
      if (bytes[i + 1] === 0) zeroOdd++;
    }
    const pairs = n >> 1;
    if (zeroOdd * 4 >= pairs * 3 && zeroEven * 4 < pairs) le = true;
    else if (zeroEven * 4 >= pairs * 3 && zeroOdd * 4 < pairs) le = false;
    else return null;
  }
  const body = Buffer.from(bytes.subarray(start, start + ((bytes.length - start) & ~1)));
  if (!le) body.swap16();
  return { encoding: le ? 'utf16le' : 'utf16be', bytes: Buffer.from(body.toString('utf16le'), 'utf8') };
}

// ---------------------------------------------------------------- HTML character references

const AMPERSAND = 0x26;
const SEMICOLON = 0x3b;

/**
 * Named references decoded: the ones for ASCII punctuation (what a token can
 * contain), a few invisible ones, and the legacy four. Digits and letters have
 * no names; numeric references cover every character.
 */
const HTML_NAMED: ReadonlyMap<string, number> = new Map(
  Object.entries({
    amp: 0x26,
    lt: 0x3c,
    gt: 0x3e,
    quot: 0x22,
    apos: 0x27,
    nbsp: 0xa0,
    shy: 0xad,
    zwj: 0x200d,
    zwnj: 0x200c,
    Tab: 0x09,
    NewLine: 0x0a,
    excl: 0x21,
    num: 0x23,
    dollar: 0x24,
    percnt: 0x25,
    lpar: 0x28,
    rpar: 0x29,
    ast: 0x2a,
    midast: 0x2a,
    plus: 0x2b,
    comma: 0x2c,
    period: 0x2e,
    sol: 0x2f,
    colon: 0x3a,
    semi: 0x3b,
    equals: 0x3d,
    quest: 0x3f,
    commat: 0x40,
    lsqb: 0x5b,
    lbrack: 0x5b,
    bsol: 0x5c,
    rsqb: 0x5d,
    rbrack: 0x5d,
    Hat: 0x5e,
    lowbar: 0x5f,
    UnderBar: 0x5f,
    grave: 0x60,
    DiacriticalGrave: 0x60,
    lcub: 0x7b,
    lbrace: 0x7b,
    verbar: 0x7c,
    vert: 0x7c,
    VerticalLine: 0x7c,
    rcub: 0x7d,
    rbrace: 0x7d,
    hyphen: 0x2010,
    dash: 0x2010,
  }),
);
const HTML_NAME_MAX = 16;

function isAsciiAlnum(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x7a);
}

/** FNV-1a of a name's bytes, to look names up without building a string. */
function nameHash(src: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ src[i]!, 0x01000193);
  return h >>> 0;
}

const HTML_NAMED_BY_HASH = new Map<number, Array<{ name: Buffer; cp: number }>>();
for (const [name, cp] of HTML_NAMED) {
  const b = Buffer.from(name, 'latin1');
  const h = nameHash(b, 0, b.length);
  const list = HTML_NAMED_BY_HASH.get(h) ?? [];
  list.push({ name: b, cp });
  HTML_NAMED_BY_HASH.set(h, list);
}

/** A reference's length and code point packed in one number (no allocation per reference). */
const REF_LENGTH_UNIT = 0x200000;

/**
 * The character reference at `at`, as length * REF_LENGTH_UNIT + code point, or
 * 0 if there is none. Numeric ones (`&#103;`, `&#x68;`) may omit the `;`, as
 * browsers allow; named ones need it.
 */
function htmlReference(src: Uint8Array, at: number, end: number): number {
  if (src[at] !== AMPERSAND || at + 2 >= end) return 0;
  let i = at + 1;
  if (src[i] === 0x23) {
    i++;
    const hex = src[i] === 0x78 || src[i] === 0x58;
    if (hex) i++;
    const digitsStart = i;
    let cp = 0;
    for (; i < end && i - digitsStart < (hex ? 6 : 7); i++) {
      const v = HEX_VALUE[src[i]!]!;
      if (v < 0 || (!hex && v > 9)) break;
      cp = cp * (hex ? 16 : 10) + v;
    }
    if (i === digitsStart) return 0;
    if (i < end && src[i] === SEMICOLON) i++;
    // Invalid code points decode to U+FFFD, as in browsers.
    if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
    return (i - at) * REF_LENGTH_UNIT + cp;
  }
  const nameStart = i;
  while (i < end && i - at <= HTML_NAME_MAX && isAsciiAlnum(src[i]!)) i++;
  if (i >= end || src[i] !== SEMICOLON || i === nameStart) return 0;
  for (const entry of HTML_NAMED_BY_HASH.get(nameHash(src, nameStart, i)) ?? []) {
    if (entry.name.length !== i - nameStart) continue;
    let same = true;
    for (let k = 0; k < entry.name.length && same; k++) same = entry.name[k] === src[nameStart + k];
    if (same) return (i + 1 - at) * REF_LENGTH_UNIT + entry.cp;
  }
  return 0;
}

export function htmlEscapeLength(src: Uint8Array, at: number): number {
  return Math.floor(htmlReference(src, at, src.length) / REF_LENGTH_UNIT);
}

/**
 * Characters a reference to which can be hiding a credential: printable ASCII
 * but the five that fill ordinary HTML (& < > " '), which vault secrets are
 * matched escaped instead (their html fingerprint form).
 */
const HTML_REVEALING = new Uint8Array(128);
for (let c = 0x20; c < 0x7f; c++) HTML_REVEALING[c] = '&<>"\''.includes(String.fromCharCode(c)) ? 0 : 1;

/** First two letters of the named references that stand for revealing characters. */
const REVEALING_NAME_START = new Uint8Array(65536);
for (const [name, cp] of HTML_NAMED)
  if (cp < 128 && HTML_REVEALING[cp] === 1) REVEALING_NAME_START[name.charCodeAt(0) | (name.charCodeAt(1) << 8)] = 1;

/**
 * Length of a reference that decodes to a revealing character (HTML_REVEALING),
 * 0 otherwise: `&amp;`, `&lt;`, `&quot;`, `&#39;`, `&mdash;`, `&nbsp;` and the
 * like, which fill ordinary HTML, open no window.
 */
export function revealingHtmlEscapeLength(src: Uint8Array, at: number): number {
  // Named references to anything else (&amp; &lt; &nbsp; &mdash; ...) are turned away by their first two letters.
  if (src[at + 1] !== 0x23 && REVEALING_NAME_START[src[at + 1]! | (src[at + 2]! << 8)] !== 1) return 0;
  const ref = htmlReference(src, at, src.length);
  const cp = ref % REF_LENGTH_UNIT;
  return ref !== 0 && cp < 128 && HTML_REVEALING[cp] === 1 ? Math.floor(ref / REF_LENGTH_UNIT) : 0;
}

const htmlSegment: SegmentDecoder = (src, start, end, out, at) => {
  const buf = asBuffer(src);
  let i = start;
  while (i < end) {
    const amp = buf.indexOf(AMPERSAND, i);
    const stop = amp < 0 || amp >= end ? end : amp;
    at += buf.copy(out, at, i, stop);
    if (stop >= end) break;
    const ref = htmlReference(buf, stop, end);
    if (ref === 0) {
      out[at++] = AMPERSAND;
      i = stop + 1;
    } else {
      at = writeUtf8(out, at, ref % REF_LENGTH_UNIT);
      i = stop + Math.floor(ref / REF_LENGTH_UNIT);
    }
  }
  return at;
};

/** Decoding rounds applied at most: `&amp;#103;` (escaped twice) needs two. */
export const MAX_HTML_ROUNDS = 3;

/**
 * HTML character references (named for ASCII punctuation, decimal and hex numeric)
 * decoded in windows around them, repeated while references remain (up to
 * MAX_HTML_ROUNDS); null when there is none. With `revealingOnly`, windows are
 * placed only around references that can hide a credential (see
 * revealingHtmlEscapeLength); everything inside a window is still decoded. Output is never longer than input:
 * the shortest reference (`&#9`) is 3 bytes, and every reference takes at least
 * as many bytes as the UTF-8 of its character.
 */
export function htmlDecode(src: Uint8Array, margin = Infinity, revealingOnly = false): Buffer | null {
  const windows = escapeWindows(src, [AMPERSAND], revealingOnly ? revealingHtmlEscapeLength : htmlEscapeLength, margin);
  if (windows === null) return null;
  let out = decodeWindows(src, windows, htmlSegment);
  for (let round = 1; round < MAX_HTML_ROUNDS && hasEscape(out, AMPERSAND, htmlEscapeLength); round++) {
    out = decodeWindows(out, 'all', htmlSegment);
  }
  return out;
}

// ---------------------------------------------------------------- separator-interleaved text

/** Fewest characters a separated run must have to be decoded (as MIN_ENCODED_RUN). */
export const MIN_SEPARATED_CHARS = 16;

/** Separators: whitespace and ASCII punctuation. */
const IS_SEPARATOR = new Uint8Array(256);
for (const b of [0x09, 0x0a, 0x0d, 0x20]) IS_SEPARATOR[b] = 1;
for (let b = 0x21; b < 0x7f; b++) if (!isAsciiAlnum(b)) IS_SEPARATOR[b] = 1;

/** A run character: printable ASCII other than space. */
function isRunChar(b: number): boolean {
  return b > 0x20 && b < 0x7f;
}

/**
 * Whether a period-`period` pattern (one character, then the same `period - 1`
 * separator bytes as at `c`) holds for the cell starting at `at`.
 */
function cellMatches(src: Uint8Array, c: number, at: number, period: number): boolean {
  if (at < 0 || at + period > src.length || !isRunChar(src[at]!)) return false;
  for (let j = 1; j < period; j++) if (src[at + j] !== src[c + j]) return false;
  return true;
}

/** Printable ASCII other than space, as a table. */
const RUN_CHAR = new Uint8Array(256);
for (let b = 0x21; b < 0x7f; b++) RUN_CHAR[b] = 1;

/**
 * Probe stride: any run of MIN_SEPARATED_CHARS characters (31 bytes or more)
 * contains a whole probe window [p, p + 9) when probes are 20 bytes apart.
 */
const SEPARATED_STRIDE = 20;

/**
 * Probe positions (every SEPARATED_STRIDE bytes) at which a period-2 or period-3
 * pattern may start at p, p+1 or p+2: a separator byte (pair) repeating between
 * run characters. Reads two aligned 32-bit words per probe and compares their
 * bytes by shifting; only probes that pass are checked byte by byte.
 */
function separatedCandidates(src: Uint8Array): number[] {
  const out: number[] = [];
  const n = src.length;
  const aligned = (4 - (src.byteOffset & 3)) & 3;
  const words = (n - aligned) >> 2;
  if (!IS_LITTLE_ENDIAN || words < 64) {
    for (let p = 0; p + 8 < n; p += SEPARATED_STRIDE) if (separatedAt(src, p)) out.push(p);
    return out;
  }
  const u32 = new Uint32Array(src.buffer, src.byteOffset + aligned, words);
  const sep = IS_SEPARATOR;
  const step = SEPARATED_STRIDE >> 2;
  for (let k = 0; k + 2 < words; k += step) {
    const v = u32[k]!;
    const w = u32[k + 1]!;
    // A run of one byte (padding, a repeated letter) passes every comparison below; it fails them all only on the separator test.
    if (v === w && sep[v & 255] === 0 && Math.imul(v & 255, 0x01010101) === (v | 0)) continue;
    const v3 = v >>> 24;
    // Each test is one of separatedAt's, with the separator byte it requires checked too.
    if (
      (((v >>> 8) & 255) === v3 && v3 === ((w >>> 8) & 255) && sep[v3] === 1) ||
      (((v >>> 16) & 255) === (w & 255) && (w & 255) === ((w >>> 16) & 255) && sep[w & 255] === 1) ||
      (((v >>> 8) & 0xffff) === (w & 0xffff) && sep[(v >>> 8) & 255] === 1) ||
      (v >>> 16 === ((w >>> 8) & 0xffff) && sep[(v >>> 16) & 255] === 1) ||
      ((v3 | ((w & 255) << 8)) === w >>> 16 && sep[v3] === 1)
    ) {
      const p = aligned + (k << 2);
      if (separatedAt(src, p)) out.push(p);
    }
  }
  // The unaligned head and the tail the word loop leaves (a run there is at least partly probed above).
  if (aligned > 0 && separatedAt(src, 0)) out.unshift(0);
  const tail = aligned + (Math.max(0, words - 2) << 2);
  for (let p = tail; p + 8 < n; p += SEPARATED_STRIDE) if (separatedAt(src, p)) out.push(p);
  return out;
}

/** The byte-level check behind separatedCandidates (p + 8 < src.length). */
function separatedAt(src: Uint8Array, p: number): boolean {
  const sep = IS_SEPARATOR;
  const ch = RUN_CHAR;
  const b0 = src[p]!;
  const b1 = src[p + 1]!;
  const b2 = src[p + 2]!;
  const b3 = src[p + 3]!;
  const b4 = src[p + 4]!;
  const b5 = src[p + 5]!;
  const b6 = src[p + 6]!;
  const b7 = src[p + 7]!;
  return (
    (b1 === b3 && b3 === b5 && sep[b1] === 1 && (ch[b0]! & ch[b2]! & ch[b4]!) === 1) ||
    (b2 === b4 && b4 === b6 && sep[b2] === 1 && (ch[b1]! & ch[b3]! & ch[b5]!) === 1) ||
    (b1 === b4 && b2 === b5 && sep[b1] === 1 && (ch[b0]! & ch[b3]! & ch[b6]!) === 1) ||
    (b2 === b5 && b3 === b6 && sep[b2] === 1 && (ch[b1]! & ch[b4]! & ch[b7]!) === 1) ||
    (b3 === b6 && b4 === b7 && sep[b3] === 1 && (ch[b2]! & ch[b5]! & ch[src[p + 8]!]!) === 1)
  );
}

/**
 * Text written with one separator between its characters (`g h p _ a b`,
 * `g-h-p-_-a-b`, `g, h, p`): runs of at least MIN_SEPARATED_CHARS characters
 * with the same one- or two-byte separator after each (the last may lack it),
 * with the separators removed, joined by newlines; null when there is none.
 * Probes every 20th byte, so prose costs next to nothing. A run must have 12
 * letters or digits (runs of punctuation or of one repeated character are lines
 * and rulers, not text).
 */
export function separatedDecode(src: Uint8Array): Buffer | null {
  const n = src.length;
  const MIN_BYTES = MIN_SEPARATED_CHARS * 2 - 1;
  if (n < MIN_BYTES) return null;
  const parts: Buffer[] = [];
  let size = 0;
  let lastEnd = 0;
  for (const p of separatedCandidates(src)) {
    if (p < lastEnd) continue;
    let run: [number, number, number] | null = null;
    for (let period = 2; period <= 3 && run === null; period++)
      for (let o = 0; o < period && run === null; o++) {
        const c = p + o;
        let sepOk = true;
        for (let j = 1; j < period; j++) if (!IS_SEPARATOR[src[c + j]!]) sepOk = false;
        if (!sepOk || !cellMatches(src, c, c + period, period) || !cellMatches(src, c, c + 2 * period, period)) continue;
        let s = c;
        // A run may begin on the last character of the previous one (`a b c / d-e-f`: the d).
        while (s - period >= lastEnd - 3 && cellMatches(src, c, s - period, period)) s -= period;
        // A first character glued to a word before it ends that word (`see h t t p`: the second e).
        if (s > 0 && isAsciiAlnum(src[s - 1]!)) s += period;
        let e = c;
        while (cellMatches(src, c, e + period, period)) e += period;
        // The last character may have no separator after it, unless it starts a word (`x y here`: the h).
        let end = e + period;
        if (end < n && isRunChar(src[end]!) && !IS_SEPARATOR[src[end]!] && !(end + 1 < n && isAsciiAlnum(src[end + 1]!))) end++;
        run = [s, Math.min(end, n), period];
      }
    if (run === null) continue;
    const [s, e, period] = run;
    lastEnd = e;
    if (Math.ceil((e - s) / period) < MIN_SEPARATED_CHARS) continue;
    const out = Buffer.allocUnsafe(Math.ceil((e - s) / period));
    let w = 0;
    let alnum = 0;
    for (let i = s; i < e; i += period) {
      const b = src[i]!;
      out[w++] = b;
      if (isAsciiAlnum(b)) alnum++;
    }
    if (alnum < 12 || out.subarray(0, w).every((b) => b === out[0])) continue;
    parts.push(out.subarray(0, w));
    size += w + 1;
  }
  if (parts.length === 0) return null;
  const joined = Buffer.allocUnsafe(size - 1);
  let at = 0;
  for (const part of parts) {
    if (at > 0) joined[at++] = NEWLINE;
    at += part.copy(joined, at);
  }
  return joined;
}

// ---------------------------------------------------------------- Unicode folding

/** Characters that render as nothing: zero-width spaces and joiners, soft hyphen, variation selectors, tags, BOM... */
const DEFAULT_IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;
/** Unicode tag characters (U+E0020-U+E007E) shadow printable ASCII invisibly. */
const TAG_RUN = /[\u{E0020}-\u{E007E}]+/gu;
/** Characters normalised per call: bounds the overshoot past the output cap, and the work per call. */
const FOLD_PIECE = 16 * 1024;
/**
 * Folded output may reach this many times its windows' size (plus FOLD_SLACK)
 * before folding gives up: NFKC expands a few characters up to 18-fold
 * (U+FDFA), which text written to be read never does at length.
 */
const MAX_FOLD_FACTOR = 4;
const FOLD_SLACK = 4096;

const FOLD_DI = 1;
const FOLD_TAG = 2;
const FOLD_TOKEN = 4;
const FOLD_KNOWN = 8;
const FOLD_PUNCT = 16;
/** Per code point, filled in lazily: FOLD_KNOWN | what folding does to it (see foldWindows). */
let foldFlags: Uint8Array | undefined;
const IS_DI = /^\p{Default_Ignorable_Code_Point}$/u;
const ALNUM_RE = /[A-Za-z0-9]/;
/** Punctuation found inside credential tokens. */
const TOKEN_PUNCT = /^[_+/=.~-]$/;

function foldTable(): Uint8Array {
  return (foldFlags ??= new Uint8Array(0x110000));
}

/** Computes (once) and returns the fold flags of `cp`. */
function foldFlagsOf(cp: number): number {
  const table = foldTable();
  let f = table[cp]!;
  if (f !== 0) return f;
  const ch = String.fromCodePoint(cp);
  f = FOLD_KNOWN;
  if (IS_DI.test(ch)) f |= cp >= 0xe0020 && cp <= 0xe007e ? FOLD_TAG | FOLD_DI : FOLD_DI;
  const n = ch.normalize('NFKC');
  if (n !== ch && ALNUM_RE.test(n)) f |= FOLD_TOKEN;
  else if (n !== ch && TOKEN_PUNCT.test(n)) f |= FOLD_PUNCT;
  table[cp] = f;
  return f;
}

/**
 * Windows of `src`, widened by `margin` on UTF-8 character boundaries, around the
 * characters folding can turn into part of a token: a character whose NFKC form
 * has letters or digits (fullwidth and mathematical letters, ligatures,
 * superscript digits), a tag character, and right after a printable ASCII
 * character (inside a token) a default-ignorable code point or one whose NFKC
 * form is token punctuation (`．＿－`). Ordinary accented, CJK, Cyrillic or Arabic
 * text, emoji with their variation selectors and joiners, ellipses, fullwidth
 * punctuation after non-ASCII text and no-break spaces open none. 'all' past half
 * the layer.
 */
export function foldWindows(src: Buffer, margin: number): Windows | null {
  const n = src.length;
  const table = foldTable();
  const list: Array<[number, number]> = [];
  let covered = 0;
  for (let p = 0; p < n; p++) {
    const b = src[p]!;
    if (b < 0x80) continue;
    let cp = -1;
    let len = 1;
    const c1 = src[p + 1]!;
    if (b >= 0xc2 && b <= 0xdf) {
      if ((c1 & 0xc0) === 0x80) {
        cp = ((b & 0x1f) << 6) | (c1 & 0x3f);
        len = 2;
      }
    } else if (b >= 0xe0 && b <= 0xef) {
      const c2 = src[p + 2]!;
      if ((c1 & 0xc0) === 0x80 && (c2 & 0xc0) === 0x80) {
        cp = ((b & 0x0f) << 12) | ((c1 & 0x3f) << 6) | (c2 & 0x3f);
        len = 3;
      }
    } else if (b >= 0xf0 && b <= 0xf4) {
      const c2 = src[p + 2]!;
      const c3 = src[p + 3]!;
      if ((c1 & 0xc0) === 0x80 && (c2 & 0xc0) === 0x80 && (c3 & 0xc0) === 0x80) {
        cp = ((b & 0x07) << 18) | ((c1 & 0x3f) << 12) | ((c2 & 0x3f) << 6) | (c3 & 0x3f);
        len = 4;
      }
    }
    if (cp < 0 || cp > 0x10ffff) continue; // not UTF-8: nothing to fold
    let f = table[cp]!;
    if (f === 0) f = foldFlagsOf(cp);
    const afterAscii = p > 0 && src[p - 1]! > 0x20 && src[p - 1]! < 0x7f;
    if ((f & (FOLD_TAG | FOLD_TOKEN)) !== 0 || ((f & (FOLD_DI | FOLD_PUNCT)) !== 0 && afterAscii)) {
      let s = Math.max(0, p - margin);
      let e = Math.min(n, p + len + margin);
      while (s > 0 && (src[s]! & 0xc0) === 0x80) s--;
      while (e < n && (src[e]! & 0xc0) === 0x80) e++;
      const last = list[list.length - 1];
      if (last && s <= last[1]) {
        covered += e - last[1];
        last[1] = e;
      } else {
        list.push([s, e]);
        covered += e - s;
      }
      if (covered * 2 >= n) return 'all';
    }
    p += len - 1;
  }
  return list.length === 0 ? null : list;
}

/**
 * Text as it reads: default-ignorable code points (zero-width characters, soft
 * hyphens, variation selectors, tag characters) removed and NFKC applied
 * (fullwidth and other compatibility forms become ASCII), in windows around the
 * characters where that can reveal a token (see foldWindows). Runs of tag characters are
 * also spelled out as the ASCII they shadow, on lines of their own. Returns only
 * the windows that changed, joined by newlines; null when nothing changed, or
 * 'limit' when the output would pass `cap` bytes or MAX_FOLD_FACTOR times the
 * windows' size (NFKC can expand a character 18-fold).
 */
export function unicodeFold(src: Buffer, margin: number, cap: number): Buffer | null | 'limit' {
  const windows = foldWindows(src, margin);
  if (windows === null) return null;
  let windowBytes = 0;
  for (const [s, e] of windows === 'all' ? [[0, src.length]] : windows) windowBytes += e! - s!;
  cap = Math.min(cap, MAX_FOLD_FACTOR * windowBytes + FOLD_SLACK);
  const out: Buffer[] = [];
  let size = 0;
  const emit = (text: string): boolean => {
    const b = Buffer.from(text, 'utf8');
    size += b.length + 1;
    out.push(b);
    return size <= cap;
  };
  for (const [s, e] of windows === 'all' ? [[0, src.length] as [number, number]] : windows) {
    const text = src.toString('utf8', s, e);
    // Pieces overlap by `margin` characters so a match up to that long is whole in one of them.
    for (let from = 0; from < text.length; from += FOLD_PIECE) {
      let to = Math.min(text.length, from + FOLD_PIECE + margin);
      if (to < text.length && text.charCodeAt(to - 1) >= 0xd800 && text.charCodeAt(to - 1) <= 0xdbff) to++;
      const piece = text.slice(from, to);
      const folded = piece.replace(DEFAULT_IGNORABLE, '').normalize('NFKC');
      if (folded !== piece && !emit(folded)) return 'limit';
      // Tag characters are astral: their UTF-16 high surrogate is U+DB40.
      if (piece.includes('\uDB40'))
        for (const m of piece.matchAll(TAG_RUN)) {
          let ascii = '';
          for (const ch of m[0]) ascii += String.fromCharCode(ch.codePointAt(0)! - 0xe0000);
          if (!emit(ascii)) return 'limit';
        }
      if (to >= text.length) break;
    }
  }
  if (out.length === 0) return null;
  const joined = Buffer.allocUnsafe(size - 1);
  let at = 0;
  for (const b of out) {
    if (at > 0) joined[at++] = NEWLINE;
    at += b.copy(joined, at);
  }
  return joined;
}

// ---------------------------------------------------------------- reversal and ROT13

/** Writes [start, end) backwards (bytes: a reversed token is ASCII). */
export const reverseSegment: SegmentDecoder = (src, start, end, out, at) => {
  for (let i = end - 1; i >= start; i--) out[at++] = src[i]!;
  return at;
};

const ROT13 = new Uint8Array(256);
for (let b = 0; b < 256; b++) ROT13[b] = b;
for (let i = 0; i < 26; i++) {
  ROT13[0x41 + i] = 0x41 + ((i + 13) % 26);
  ROT13[0x61 + i] = 0x61 + ((i + 13) % 26);
}

export const rot13Segment: SegmentDecoder = (src, start, end, out, at) => {
  for (let i = start; i < end; i++) out[at++] = ROT13[src[i]!]!;
  return at;
};

export function rot13(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out += String.fromCharCode(c < 256 ? ROT13[c]! : c);
  }
  return out;
}

/** Merges [start, end) ranges (sorted by start or not) into disjoint windows, clipped to [0, n); 'all' past half of n. */
export function mergeWindows(ranges: Array<[number, number]>, n: number): Windows | null {
  if (ranges.length === 0) return null;
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  let covered = 0;
  for (const [s0, e0] of ranges) {
    const s = Math.max(0, s0);
    const e = Math.min(n, e0);
    if (e <= s) continue;
    const last = merged[merged.length - 1];
    if (last && s <= last[1]) {
      if (e > last[1]) {
        covered += e - last[1];
        last[1] = e;
      }
    } else {
      merged.push([s, e]);
      covered += e - s;
    }
  }
  if (merged.length === 0) return null;
  return covered * 2 >= n ? 'all' : merged;
}

// ---------------------------------------------------------------- decompression

export type Decompressed = { ok: true; bytes: Buffer } | { ok: false; reason: 'limit' | 'corrupt' | 'unsupported'; detail: string };

/** Content-Encoding tokens this module undoes (plus `identity`). */
export const CONTENT_CODINGS = ['gzip', 'x-gzip', 'deflate', 'br', 'zstd'] as const;

/**
 * Undoes one content coding with node:zlib's sync API, never producing more than
 * `maxOutput` bytes (the decompression-bomb guard). `deflate` accepts the zlib
 * wrapping HTTP specifies and the raw stream some servers send.
 */
export function decompress(coding: string, data: Uint8Array, maxOutput: number): Decompressed {
  const opts: ZlibOptions & BrotliOptions & ZstdOptions = { maxOutputLength: Math.max(1, maxOutput) };
  const c = coding.trim().toLowerCase();
  try {
    switch (c) {
      case 'identity':
        return data.length > maxOutput ? limit(c, maxOutput) : { ok: true, bytes: asBuffer(data) };
      case 'gzip':
      case 'x-gzip':
        return { ok: true, bytes: gunzipSync(data, opts) };
      case 'deflate':
        try {
          return { ok: true, bytes: inflateSync(data, opts) };
        } catch (err) {
          if (isLimit(err)) throw err;
          return { ok: true, bytes: inflateRawSync(data, opts) };
        }
      case 'br':
        return { ok: true, bytes: brotliDecompressSync(data, opts) };
      case 'zstd':
        return { ok: true, bytes: zstdDecompressSync(data, opts) };
      default:
        return { ok: false, reason: 'unsupported', detail: `content coding "${c}" is not one the scanner can undo` };
    }
  } catch (err) {
    if (isLimit(err)) return limit(c, maxOutput);
    return { ok: false, reason: 'corrupt', detail: `${c} data is corrupt (${(err as { code?: string }).code ?? 'decode error'})` };
  }
}

function isLimit(err: unknown): boolean {
  return (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
}

function limit(coding: string, maxOutput: number): Decompressed {
  return { ok: false, reason: 'limit', detail: `${coding} output exceeds ${maxOutput} bytes` };
}

/** Characters per piece of a Latin1View: a string this long still fits V8's young generation. */
const TEXT_PIECE = 64 * 1024;

/**
 * A layer's bytes as latin1 text, made a piece at a time and only where asked.
 * One string of a large layer lands in V8's large-object space, costlier than
 * the scan that wanted a few runs of it; slices of cached pieces are cheap.
 */
export class Latin1View {
  readonly bytes: Buffer;
  readonly #pieces: Array<string | undefined> = [];
  #all: string | undefined;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }

  /** The whole text (one string: for patterns that need it all). */
  all(): string {
    this.#all ??= this.bytes.toString('latin1');
    return this.#all;
  }

  /** The text of [start, end), as `bytes.toString('latin1', start, end)` would give. */
  slice(start: number, end: number): string {
    const first = Math.floor(start / TEXT_PIECE);
    const last = Math.floor((end - 1) / TEXT_PIECE);
    if (end <= start) return '';
    if (this.#all !== undefined) return this.#all.slice(start, end);
    if (first === last) return this.#piece(first).slice(start - first * TEXT_PIECE, end - first * TEXT_PIECE);
    let out = this.#piece(first).slice(start - first * TEXT_PIECE);
    for (let p = first + 1; p < last; p++) out += this.#piece(p);
    return out + this.#piece(last).slice(0, end - last * TEXT_PIECE);
  }

  #piece(p: number): string {
    let s = this.#pieces[p];
    if (s === undefined) {
      s = this.bytes.toString('latin1', p * TEXT_PIECE, Math.min(this.bytes.length, (p + 1) * TEXT_PIECE));
      this.#pieces[p] = s;
    }
    return s;
  }
}

export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}
