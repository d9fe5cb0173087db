// Precise redaction of a piece of text (a chat message, a header value): replace
// as little as possible so that the result scans clean. Pure and synchronous.
//
// 1. Exact spans: where the raw text itself matches a rule or holds a vault
//    secret form (LeakScanner.matchSpans), that span is replaced.
// 2. What is still found lies in a decoded, joined or transformed layer. In JSON
//    (or a URL's query), the fewest neighbouring string (parameter) values that
//    carry it are found, values outside the window blanked, and replaced; otherwise the fewest neighbouring
//    lines, then whitespace-separated tokens, then punctuation-separated pieces
//    whose text alone still scans dirty. Each is found by binary search on the
//    window's ends, so a round costs O(log n) scans. Repeated while findings
//    remain, at most MAX_ROUNDS times.
// 3. Whatever still scans dirty becomes the markers of what it holds.
// The result scans clean, so redacting it again changes nothing; markers must not
// themselves match a rule (the default ones do not).
import { Buffer } from 'node:buffer';
import { jsonStringValues, looksLikeJson, paramValues } from './join.ts';
import type { LeakScanner, ScanFinding, ScanLocation } from './scanner.ts';

export interface RedactOptions {
  /** Where the text is going, as LeakScanner.scanText takes it. Default 'body'. */
  location?: ScanLocation;
  field?: string;
  /** Text put in place of what a finding covers. Default `[REDACTED:<rule id>]` / `[REDACTED:secret:<name>]`. */
  marker?: (f: ScanFinding) => string;
}

export interface RedactResult {
  text: string;
  /** What the text held before redaction (as LeakScanner.scanText reports it). */
  findings: ScanFinding[];
  /** Labels actually replaced, in order of first replacement, e.g. 'github_pat', 'secret:llm_api_key'. */
  replaced: string[];
}

/** Rounds of window search at most; what is left after them is replaced whole. */
const MAX_ROUNDS = 32;
/** Texts larger than this get exact spans only, then whole replacement (window search would rescan them many times). */
const REFINE_MAX_BYTES = 256 * 1024;
/** Final stand-in if a custom marker itself scans dirty. */
const LAST_RESORT = '[REDACTED]';

/** `secret:<name>` for a vault secret, the rule id otherwise. */
export function findingLabel(f: Pick<ScanFinding, 'kind' | 'id'>): string {
  return f.kind === 'secret' ? `secret:${f.id}` : f.id;
}

function defaultMarker(f: ScanFinding): string {
  return `[REDACTED:${findingLabel(f)}]`;
}

/**
 * Redacts `text` so that it scans clean under `scanner`, keeping every part of
 * it that is not needed to hide what was found (see the module comment).
 */
export function redactText(scanner: LeakScanner, text: string, opts: RedactOptions = {}): RedactResult {
  const location = opts.location ?? 'body';
  const field = opts.field;
  const marker = opts.marker ?? defaultMarker;
  const scan = (b: Uint8Array): ScanFinding[] => scanner.scanText(b, location, field);
  const findings = scanner.scanText(text, location, field);
  if (findings.length === 0) return { text, findings, replaced: [] };

  const replaced: string[] = [];
  const markersFor = (fs: readonly ScanFinding[]): Buffer => {
    const seen = new Set<string>();
    let out = '';
    for (const f of fs) {
      const label = findingLabel(f);
      if (seen.has(label)) continue;
      seen.add(label);
      if (!replaced.includes(label)) replaced.push(label);
      out += marker(f);
    }
    return Buffer.from(out, 'utf8');
  };
  const pseudo = (kind: ScanFinding['kind'], id: string): ScanFinding => {
    const f: ScanFinding = { kind, id, location, encoding: 'raw' };
    if (field !== undefined) f.field = field;
    return f;
  };

  let cur: Buffer = Buffer.from(text, 'utf8');
  // 1. Exact spans of the raw text.
  if (cur.length <= scanner.maxScanBytes) {
    const ranges = mergeSpans(scanner.matchSpans(cur));
    if (ranges.length > 0)
      cur = replaceRanges(
        cur,
        ranges.map((r) => ({ start: r.start, end: r.end, with: markersFor(r.labels.map((l) => pseudo(l.kind, l.id))) })),
      );
  }
  // 2. Windows.
  let left = scan(cur);
  for (let round = 0; left.length > 0 && round < MAX_ROUNDS && cur.length <= REFINE_MAX_BYTES; round++) {
    const next = refineValues(cur, valueSpans(cur, location), scan, markersFor) ?? refineText(cur, scan, markersFor);
    if (next === null) break;
    cur = next;
    left = scan(cur);
  }
  // 3. Whatever is left, whole.
  if (left.length > 0) {
    cur = markersFor(left);
    if (scan(cur).length > 0) cur = Buffer.from(LAST_RESORT, 'utf8');
    if (scan(cur).length > 0) cur = Buffer.alloc(0);
  }
  return { text: cur.toString('utf8'), findings, replaced };
}

interface LabelledRange {
  start: number;
  end: number;
  labels: Array<{ kind: ScanFinding['kind']; id: string }>;
}

/** Overlapping or touching spans merged, each keeping every label it covers (first found first). */
function mergeSpans(spans: ReadonlyArray<{ start: number; end: number; kind: ScanFinding['kind']; id: string }>): LabelledRange[] {
  const out: LabelledRange[] = [];
  for (const s of [...spans].sort((a, b) => a.start - b.start || b.end - a.end)) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) {
      last.end = Math.max(last.end, s.end);
      if (!last.labels.some((l) => l.kind === s.kind && l.id === s.id)) last.labels.push({ kind: s.kind, id: s.id });
    } else out.push({ start: s.start, end: s.end, labels: [{ kind: s.kind, id: s.id }] });
  }
  return out;
}

function replaceRanges(src: Buffer, ranges: ReadonlyArray<{ start: number; end: number; with: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const r of ranges) {
    parts.push(src.subarray(at, r.start), r.with);
    at = r.end;
  }
  parts.push(src.subarray(at));
  return Buffer.concat(parts);
}

type Scan = (b: Uint8Array) => ScanFinding[];
type Markers = (fs: readonly ScanFinding[]) => Buffer;
type Unit = readonly [number, number];

/**
 * The fewest neighbouring units [i, j] for which `dirty(i, j)` holds, given that
 * it holds for all of them: the smallest j with dirty(0, j), then the largest i
 * with dirty(i, j). Each probe that narrows the window is one that held, so the
 * result holds even where dirtiness is not monotone (a base64 blob cut out of
 * alignment, say).
 */
export function minimalWindow(n: number, dirty: (i: number, j: number) => boolean): [number, number] {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (dirty(0, mid)) hi = mid;
    else lo = mid + 1;
  }
  const j = hi;
  lo = 0;
  hi = j;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (dirty(mid, j)) lo = mid;
    else hi = mid - 1;
  }
  return [lo, j];
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0c || b === 0x0b;
}

/** Bytes that end a piece: whitespace and the punctuation that separates fields in JSON, URLs, headers and code. */
const PIECE_BREAK = new Uint8Array(256);
for (const c of ' \t\n\r\f\v"\'`,;:=&?{}[]()<>|\\') PIECE_BREAK[c.charCodeAt(0)] = 1;

/** Maximal runs of bytes in [from, to) for which `inside` holds. */
function runs(src: Buffer, from: number, to: number, inside: (b: number) => boolean): Unit[] {
  const out: Unit[] = [];
  for (let i = from; i < to;) {
    while (i < to && !inside(src[i]!)) i++;
    const s = i;
    while (i < to && inside(src[i]!)) i++;
    if (i > s) out.push([s, i]);
  }
  return out;
}

const LEVELS: ReadonlyArray<(src: Buffer, from: number, to: number) => Unit[]> = [
  (src, from, to) => runs(src, from, to, (b) => b !== 0x0a), // lines
  (src, from, to) => runs(src, from, to, (b) => !isSpace(b)), // tokens
  (src, from, to) => runs(src, from, to, (b) => PIECE_BREAK[b] === 0), // pieces
];

/**
 * Narrows the dirty text down to the fewest lines, then tokens, then pieces that
 * scan dirty on their own, and replaces that window with its markers. Null if
 * nothing narrower than the whole text is dirty on its own.
 */
function refineText(cur: Buffer, scan: Scan, markersFor: Markers): Buffer | null {
  let from = 0;
  let to = cur.length;
  for (const level of LEVELS) {
    const units = level(cur, from, to);
    if (units.length === 0) break;
    const span = (i: number, j: number) => cur.subarray(units[i]![0], units[j]![1]);
    if (scan(span(0, units.length - 1)).length === 0) break;
    const [i, j] = minimalWindow(units.length, (a, b) => scan(span(a, b)).length > 0);
    from = units[i]![0];
    to = units[j]![1];
  }
  if (from === 0 && to === cur.length) return null;
  const found = scan(cur.subarray(from, to));
  if (found.length === 0) return null;
  return replaceRanges(cur, [{ start: from, end: to, with: markersFor(found) }]);
}

/** The values a text is made of, if it has any: JSON string values, or a URL's query values. */
function valueSpans(cur: Buffer, location: ScanLocation): number[] | null {
  if (looksLikeJson(cur)) return jsonStringValues(cur).spans;
  if (location === 'url') return paramValues(cur, true);
  return null;
}

/**
 * For text made of values (JSON, a query string) whose findings live in those
 * values (gone once every value is blanked): the fewest neighbouring values
 * that, with every other value blanked, still scan dirty. One value is narrowed
 * further as text if it is dirty on its own; several are each replaced by the
 * markers, keeping the structure. Null when there are no values or the findings
 * lie outside them.
 */
function refineValues(cur: Buffer, spans: readonly number[] | null, scan: Scan, markersFor: Markers): Buffer | null {
  if (spans === null) return null;
  const n = spans.length >> 1;
  if (n === 0) return null;
  const keepOnly = (i: number, j: number): Buffer => {
    const parts: Buffer[] = [];
    let at = 0;
    for (let k = 0; k < n; k++) {
      if (k >= i && k <= j) continue;
      parts.push(cur.subarray(at, spans[2 * k]!));
      at = spans[2 * k + 1]!;
    }
    parts.push(cur.subarray(at));
    return Buffer.concat(parts);
  };
  if (scan(keepOnly(1, 0)).length > 0) return null; // dirty with every value blanked
  const [i, j] = minimalWindow(n, (a, b) => scan(keepOnly(a, b)).length > 0);
  const found = scan(keepOnly(i, j));
  if (found.length === 0) return null;
  if (i === j) {
    const value = cur.subarray(spans[2 * i]!, spans[2 * i + 1]!);
    if (scan(value).length > 0) {
      const inner = refineText(value, scan, markersFor);
      const replacement = inner ?? markersFor(scan(value));
      return replaceRanges(cur, [{ start: spans[2 * i]!, end: spans[2 * i + 1]!, with: replacement }]);
    }
  }
  const markers = markersFor(found);
  const ranges: Array<{ start: number; end: number; with: Buffer }> = [];
  for (let k = i; k <= j; k++) ranges.push({ start: spans[2 * k]!, end: spans[2 * k + 1]!, with: markers });
  return replaceRanges(cur, ranges);
}
