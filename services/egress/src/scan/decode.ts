// The decoding layers the leak scanner looks through. Each function is pure and
// bounded: output is never larger than its input except decompression, which
// always runs with an explicit output cap.
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
  const lists: Array<Array<[number, number]>> = [];
  for (const marker of markers) {
    const list: Array<[number, number]> = [];
    let covered = 0;
    for (let p = buf.indexOf(marker); p >= 0; p = buf.indexOf(marker, p + 1)) {
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
  for (let p = buf.indexOf(marker); p >= 0; p = buf.indexOf(marker, p + 1)) if (escapeLength(buf, p) > 0) return true;
  return false;
}

// ---------------------------------------------------------------- base64 / hex runs

/** Shortest base64 or hex run decoded (12 bytes of base64, 8 of hex): shorter ones cannot hide a credential worth finding. */
export const MIN_ENCODED_RUN = 16;

export type CompressionFormat = 'gzip' | 'deflate' | 'zstd';

/** One group of decoded runs. `text` says whether the runs look like text (worth unescaping further). */
export interface DecodedGroup {
  encoding: 'base64' | 'base64url' | 'hex';
  text: boolean;
  bytes: Buffer;
}

export interface DecodedRuns {
  groups: DecodedGroup[];
  /** Decoded runs that start with a compression format's magic bytes. */
  compressed: Array<{ format: CompressionFormat; encoding: 'base64' | 'base64url' | 'hex'; data: Buffer }>;
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
 * MIME/PEM line breaks allowed after lines whose length is a multiple of 4) and
 * runs of hex digits inside them, and decodes each. `latin1` returns the layer as a
 * latin1 string (the caller caches it). Decoded runs are grouped by encoding and by
 * whether they look like text, each group joined with newlines.
 */
export function decodeRuns(src: Uint8Array, latin1: () => string): DecodedRuns {
  const b64Runs: number[] = [];
  const hexRuns: number[] = [];
  findRuns(src, b64Runs, hexRuns);
  return decodeFound(latin1, b64Runs, hexRuns);
}

const B64_BIT = 1;
const HEX_BIT = 2;
/** Class bits of a byte pair (little-endian 16-bit value): B64_BIT / HEX_BIT set when both bytes are in the class. */
const PAIR_CLASS = new Uint8Array(65536);
{
  const one = new Uint8Array(256);
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_') one[c.charCodeAt(0)]! |= B64_BIT;
  for (const c of '0123456789abcdefABCDEF') one[c.charCodeAt(0)]! |= HEX_BIT;
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
function findRuns(src: Uint8Array, out: number[], hexOut: number[]): void {
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
      else i = (lastEnd = extendRun(src, i, lastEnd, out, hexOut, null, 0)) + MIN;
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
    lastEnd = extendRun(src, at, lastEnd, out, hexOut, u32, aligned);
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
function extendRun(
  src: Uint8Array,
  probe: number,
  lastEnd: number,
  out: number[],
  hexOut: number[],
  u32: Uint32Array | null,
  aligned: number,
): number {
  const MIN = MIN_ENCODED_RUN;
  const to = src.length;
  let s = probe;
  while (s > lastEnd && (BYTE_CLASS[src[s - 1]!]! & B64_BIT) !== 0) s--;
  let e = probe + 1;
  if (u32 !== null) {
    // Cross long runs (base64 blobs) a word at a time.
    while (e < to && ((e - aligned) & 3) !== 0 && (BYTE_CLASS[src[e]!]! & B64_BIT) !== 0) e++;
    if (((e - aligned) & 3) === 0) {
      let k = (e - aligned) >> 2;
      while (k < u32.length && wholeWord(u32, k)) k++;
      e = aligned + (k << 2);
    }
  }
  while (e < to && (BYTE_CLASS[src[e]!]! & B64_BIT) !== 0) e++;
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
    while (g < to && (BYTE_CLASS[src[g]!]! & B64_BIT) !== 0) g++;
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
    const hexBefore = hexOut.length;
    findHexRuns(src, s, e, hexOut);
    // A run that is one hex run throughout is a hash or id, never base64 of anything worth decoding.
    const allHex = hexOut.length === hexBefore + 2 && hexOut[hexBefore] === s && hexOut[hexBefore + 1] === e && pad === 0;
    if (!allHex) out.push(s + skew, end);
  }
  return end;
}

/** Hex runs of at least MIN_ENCODED_RUN inside [start, end), probing every MIN-th byte. */
function findHexRuns(src: Uint8Array, start: number, end: number, out: number[]): void {
  const MIN = MIN_ENCODED_RUN;
  let lastEnd = start;
  for (let j = start + MIN - 1; j < end;) {
    if ((BYTE_CLASS[src[j]!]! & HEX_BIT) === 0) {
      j += MIN;
      continue;
    }
    let s = j;
    while (s > lastEnd && (BYTE_CLASS[src[s - 1]!]! & HEX_BIT) !== 0) s--;
    let e = j + 1;
    while (e < end && (BYTE_CLASS[src[e]!]! & HEX_BIT) !== 0) e++;
    if (e - s >= MIN) out.push(s, e);
    lastEnd = e;
    j = e + MIN;
  }
}

const GROUP_ENCODINGS = ['base64', 'base64url', 'hex'] as const;
const ESCAPED_LINE_BREAK = /\\{1,2}[rn]/g;

/**
 * Decodes the runs found into one buffer, then splits it by encoding and by
 * text-likeness (copying only when a layer holds more than one kind).
 */
function decodeFound(latin1: () => string, b64Runs: number[], hexRuns: number[]): DecodedRuns {
  const out: DecodedRuns = { groups: [], compressed: [], size: 0 };
  if (b64Runs.length === 0 && hexRuns.length === 0) return out;
  const str = latin1();
  let capacity = 0;
  for (let k = 0; k < b64Runs.length; k += 2) capacity += ((b64Runs[k + 1]! - b64Runs[k]! + 3) >> 2) * 3 + 1;
  for (let k = 0; k < hexRuns.length; k += 2) capacity += ((hexRuns[k + 1]! - hexRuns[k]!) >> 1) + 1;
  const all = Buffer.allocUnsafe(capacity);
  // Per decoded run: start, end, bucket (encoding * 2 + binary).
  const parts: number[] = [];
  let at = 0;
  const place = (kind: number, written: number) => {
    if (written === 0) return;
    const part = all.subarray(at, at + written);
    const format = sniffCompression(part);
    if (format !== null) out.compressed.push({ format, encoding: GROUP_ENCODINGS[kind]!, data: Buffer.from(part) });
    parts.push(at, at + written, kind * 2 + (looksBinary(part) ? 1 : 0));
    at += written + 1;
    all[at - 1] = NEWLINE;
  };
  for (let k = 0; k < b64Runs.length; k += 2) {
    let run = str.slice(b64Runs[k]!, b64Runs[k + 1]!);
    if (run.includes('\\')) run = run.replace(ESCAPED_LINE_BREAK, '');
    place(run.includes('-') || run.includes('_') ? 1 : 0, all.write(run, at, 'base64'));
  }
  for (let k = 0; k < hexRuns.length; k += 2) {
    const s = hexRuns[k]!;
    const e = hexRuns[k + 1]!;
    place(2, all.write(str.slice(s, e - ((e - s) & 1)), at, 'hex'));
  }
  if (parts.length === 0) return out;
  const first = parts[2]!;
  let uniform = true;
  for (let p = 5; p < parts.length; p += 3) if (parts[p] !== first) uniform = false;
  if (uniform) {
    out.groups.push({ encoding: GROUP_ENCODINGS[first >> 1]!, text: (first & 1) === 0, bytes: all.subarray(0, at - 1) });
    out.size = at - 1;
    return out;
  }
  for (let bucket = 0; bucket < 6; bucket++) {
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

export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}
