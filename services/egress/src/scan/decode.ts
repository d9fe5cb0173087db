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

const jsonSegment: SegmentDecoder = (src, start, end, out, at) => {
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    if (b !== BACKSLASH || i + 1 >= end) {
      out[at++] = b;
      continue;
    }
    const c = src[i + 1]!;
    const simple = SIMPLE_ESCAPE[c];
    if (simple !== undefined) {
      out[at++] = simple;
      i += 1;
    } else if (c === 0x75 && i + 5 < end && isHex(src, i + 2, 4)) {
      let cp = hexAt(src, i + 2, 4);
      i += 5;
      // A surrogate pair spelled as two escapes is one code point.
      if (cp >= 0xd800 && cp <= 0xdbff && i + 6 < end && src[i + 1] === BACKSLASH && src[i + 2] === 0x75 && isHex(src, i + 3, 4)) {
        const lo = hexAt(src, i + 3, 4);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i += 6;
        }
      }
      at = writeUtf8(out, at, cp);
    } else if (c === 0x78 && i + 3 < end && isHex(src, i + 2, 2)) {
      out[at++] = hexAt(src, i + 2, 2);
      i += 3;
    } else {
      out[at++] = b;
    }
  }
  return at;
};

/** JSON string unescaping (plus \xNN); null when nothing would change. */
export function jsonUnescape(src: Uint8Array, margin = Infinity): Buffer | null {
  const windows = escapeWindows(src, [BACKSLASH], jsonEscapeLength, margin);
  return windows === null ? null : decodeWindows(src, windows, jsonSegment);
}

// ---------------------------------------------------------------- base64 / hex runs

const B64_CLASS = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_') B64_CLASS[c.charCodeAt(0)] = 1;

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
  if ((a & 0x0f) === 8 && a >> 4 <= 7 && ((a << 8) | b) % 31 === 0) return 'deflate';
  return null;
}

/**
 * Finds runs of base64 / base64url characters (at least MIN_ENCODED_RUN long, with
 * MIME/PEM line breaks allowed between lines of a multiple of 4) and runs of hex
 * digits inside them, and decodes each. `latin1` returns the layer as a latin1 string
 * (the caller caches it). Decoded runs are grouped by encoding and by whether they
 * look like text, each group joined with newlines.
 */
export function decodeRuns(src: Uint8Array, latin1: () => string): DecodedRuns {
  const n = src.length;
  const MIN = MIN_ENCODED_RUN;
  const b64Runs: number[] = [];
  const hexRuns: number[] = [];
  let lastEnd = 0;
  // Probing every MIN-th byte finds every run of at least MIN: such a run covers a probe.
  for (let i = MIN - 1; i < n; ) {
    if (B64_CLASS[src[i]!] === 0) {
      i += MIN;
      continue;
    }
    let s = i;
    while (s > lastEnd && B64_CLASS[src[s - 1]!] === 1) s--;
    let e = s;
    let lineStart = s;
    let hexStart = -1;
    let chars = 0;
    for (;;) {
      while (e < n && B64_CLASS[src[e]!] === 1) {
        if (HEX_VALUE[src[e]!]! >= 0) {
          if (hexStart < 0) hexStart = e;
        } else if (hexStart >= 0) {
          if (e - hexStart >= MIN) hexRuns.push(hexStart, e);
          hexStart = -1;
        }
        e++;
      }
      if (hexStart >= 0) {
        if (e - hexStart >= MIN) hexRuns.push(hexStart, e);
        hexStart = -1;
      }
      chars += e - lineStart;
      const lineLen = e - lineStart;
      if (e < n && (src[e] === 13 || src[e] === 10) && lineLen >= MIN && lineLen % 4 === 0) {
        let f = e + 1;
        if (src[e] === 13 && f < n && src[f] === 10) f++;
        if (f < n && B64_CLASS[src[f]!] === 1) {
          e = f;
          lineStart = f;
          continue;
        }
      }
      break;
    }
    let end = e;
    let pad = 0;
    while (end < n && pad < 2 && src[end] === 0x3d) {
      end++;
      pad++;
    }
    if (chars >= MIN) {
      // Padding marks where the encoding ends, so a run glued to preceding word
      // characters can be realigned from its end.
      const skew = pad > 0 && lineStart === s ? (chars + pad) % 4 : 0;
      b64Runs.push(s + skew, end);
    }
    lastEnd = end;
    i = end + MIN;
  }

  const out: DecodedRuns = { groups: [], compressed: [], size: 0 };
  if (b64Runs.length === 0 && hexRuns.length === 0) return out;
  const str = latin1();
  const buckets = new Map<string, { encoding: DecodedGroup['encoding']; text: boolean; parts: Buffer[]; size: number }>();
  const add = (encoding: DecodedGroup['encoding'], decoded: Buffer) => {
    if (decoded.length === 0) return;
    const format = sniffCompression(decoded);
    if (format !== null) out.compressed.push({ format, encoding, data: decoded });
    const text = !looksBinary(decoded);
    const key = `${encoding}/${text}`;
    let b = buckets.get(key);
    if (!b) buckets.set(key, (b = { encoding, text, parts: [], size: 0 }));
    b.parts.push(decoded);
    b.size += decoded.length + 1;
  };
  for (let k = 0; k < b64Runs.length; k += 2) {
    const run = str.slice(b64Runs[k]!, b64Runs[k + 1]!);
    add(run.includes('-') || run.includes('_') ? 'base64url' : 'base64', Buffer.from(run, 'base64'));
  }
  for (let k = 0; k < hexRuns.length; k += 2) {
    const s = hexRuns[k]!;
    const e = hexRuns[k + 1]!;
    add('hex', Buffer.from(str.slice(s, e - ((e - s) & 1)), 'hex'));
  }
  for (const b of buckets.values()) {
    const bytes = Buffer.allocUnsafe(b.size - 1);
    let at = 0;
    for (const part of b.parts) {
      if (at > 0) bytes[at++] = NEWLINE;
      at += part.copy(bytes, at);
    }
    out.groups.push({ encoding: b.encoding, text: b.text, bytes });
    out.size += bytes.length;
  }
  return out;
}

// ---------------------------------------------------------------- decompression

export type Decompressed =
  | { ok: true; bytes: Buffer }
  | { ok: false; reason: 'limit' | 'corrupt' | 'unsupported'; detail: string };

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
