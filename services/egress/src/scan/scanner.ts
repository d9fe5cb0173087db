// The leak scanner: looks for credential formats (rules.ts) and for vault secrets
// (exact.ts) in a request's URL, headers and body, through the encodings they may
// be wrapped in (decode.ts). Pure and synchronous; egress calls it before
// injecting credentials, so `{{secret:NAME}}` placeholders are what it sees.
//
// A scan is a breadth-first walk over layers. The root layer is the URL, one
// header line ("name: value") or the body after undoing Content-Encoding; each
// layer is read once by a single pass of the combined 4-byte prefix index (rule
// literals, secret prefixes, and rule literals written backwards or ROT13'd
// together), then, while the depth allows, its children are queued:
// - text transforms (kept in windows where sensible): percent, form, JSON and HTML
//   unescaping; Unicode folding (default-ignorable code points removed, NFKC,
//   tag characters spelled out) when the layer has non-ASCII bytes; one-byte or
//   two-byte separators between every character removed; text read backwards
//   and ROT13 undone in windows around the transformed literals seen;
// - decodings: base64/base64url/hex/base32 runs (UTF-16 runs transcoded),
//   compression, a UTF-16 body;
// - joins: the string values of a JSON layer (and of JSON nested in its strings),
//   the URL's query values, a form body's values, and all header values, each
//   joined in order, as windows around the rule literals and secret prefixes that
//   come within reach of a junction between two values (join.ts). Joined windows
//   are matched by half: secrets against every value glued together, rules only
//   across whitespace-free values, so that a near-miss token followed by prose
//   does not become a match.
// Every decoded byte counts against a per-scan budget; running out, any
// decompression exceeding its cap, Unicode folding expanding more than fourfold,
// or joins needing more windows than their cap, yields a scan_limit_exceeded
// finding so that egress refuses rather than forwards unscanned.
//
// Percent, JSON and HTML layers are decoded only in windows around their escapes
// (margin: 1 KiB or the longest secret form, whichever is larger), since text far
// from an escape is the same as in the parent layer, already scanned. JSON's
// \" \\ \n \r \t escapes only open windows when some vault secret contains a
// character JSON escapes; rules match those escapes in the raw text themselves.
// Likewise HTML references open windows only if they stand for printable ASCII
// other than & < > " ' (not `&amp;`, `&quot;`, `&#39;`, `&mdash;`...): rules need
// none of those five, and vault secrets holding them have an html form.
// Decoded runs that are not valid UTF-8 (what decoding a word that merely looks
// like base64 gives) are treated as binary: matched, never unescaped or folded.
//
// Known limits: an encoding nested deeper than maxDecodeDepth; a match involving
// an escape but longer than the window margin; base64 or base32 of a secret at an
// offset not aligned to its block inside a larger blob (its decoded layer is
// scanned instead); base32 without padding of fewer than 15 bytes; quoted-printable; homoglyphs NFKC keeps apart (Cyrillic а for
// Latin a); a separated run glued to a one-letter word (`a g h p _`), or with a
// separator that changes along the way; an encoding or escape inside the pieces
// of a split secret (joined windows are matched, not decoded further); a
// credential split into more than 64 values and followed by a value starting with
// a letter or digit, or reaching more than 320 bytes past its literal, or split
// with nothing of its literal visible raw and none straddling a junction; JSON
// keys and numbers (only string values are joined); backwards or ROT13 text of
// rules whose literals expand into more than 64 heads, and of vault secrets
// shorter than 16 bytes (backwards); encryption, and transformations beyond
// these. It raises the bar; it cannot stop a determined sender.
import { Buffer, isAscii } from 'node:buffer';
import {
  asBuffer,
  decodeRuns,
  decodeWindows,
  decompress,
  htmlDecode,
  jsonUnescape,
  Latin1View,
  looksBinary,
  mergeWindows,
  percentDecode,
  reverseSegment,
  rot13,
  rot13Segment,
  separatedDecode,
  sniffCompression,
  unicodeFold,
  utf16Decode,
  type CompressionFormat,
  type Decompressed,
} from './decode.ts';
import { ExactMatcher, confirmAt, type PrefixGroup } from './exact.ts';
import type { SecretFingerprint } from './fingerprint.ts';
import {
  RULE_KEY,
  SECRET_KEY,
  MAX_JSON_NESTING,
  joinedWindows,
  jsonStringValues,
  looksLikeJson,
  paramValues,
  unescapeNested,
  type KeyHits,
  type KeyKinds,
} from './join.ts';
import { Prefix4Index, key4OfLatin1 } from './prefix-index.ts';
import { patternReach, type PatternReach } from './reach.ts';
import { BUILTIN_RULES, InvalidLeakRule, assertBoundedPattern, type LeakRule } from './rules.ts';

export type ScanLocation = 'url' | 'header' | 'body';

/** One thing found. Never carries the matched text, an offset or any other part of the data. */
export interface ScanFinding {
  kind: 'rule' | 'secret';
  /** Rule id, one of the SCAN_* ids below, or the vault secret's name. */
  id: string;
  location: ScanLocation;
  /** Header name (lower case) for location 'header'. */
  field?: string;
  /** Decode chain that revealed it, outermost first, e.g. 'gzip>percent>base64'; 'raw' if none. */
  encoding: string;
}

/** The body, a decompressed stream or the decoded layers outgrew their limit: the scan is incomplete. */
export const SCAN_LIMIT_EXCEEDED = 'scan_limit_exceeded';
/** Content-Encoding data could not be decoded: the scan could not see the body. */
export const CONTENT_DECODING_FAILED = 'content_decoding_failed';
/** Content-Encoding names a coding the scanner cannot undo. */
export const CONTENT_ENCODING_UNSUPPORTED = 'content_encoding_unsupported';

/** Findings that mean "could not scan it all" rather than "found a leak"; either way egress must refuse. */
export const INCOMPLETE_SCAN_IDS: ReadonlySet<string> = new Set([
  SCAN_LIMIT_EXCEEDED,
  CONTENT_DECODING_FAILED,
  CONTENT_ENCODING_UNSUPPORTED,
]);

export interface LeakScannerOptions {
  /** Default: BUILTIN_RULES. */
  rules?: readonly LeakRule[];
  /** Decode steps below a root layer (percent, JSON, base64, hex, sniffed compression). Default 3. */
  maxDecodeDepth?: number;
  /** Largest root layer scanned (the body after Content-Encoding, a URL, a header line). Default 16 MiB. */
  maxScanBytes?: number;
  /** Cap on each decompression's output. Default: maxScanBytes. */
  maxDecompressedBytes?: number;
  /** Cap on all decoded layers of one request together. Default: 4 x maxScanBytes. */
  maxDecodedBytes?: number;
}

export class InvalidScannerOptions extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidScannerOptions';
  }
}

export interface ScanRequestInput {
  /** The request target as sent (absolute form for a proxy): host, path and query are all scanned. */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** As received, still Content-Encoded. */
  body: Uint8Array;
}

/** Matches that involve a decoded escape are assumed to be at most this long (rule context included). */
const RULE_WINDOW = 1024;
/** Credentials hidden by Unicode tricks are assumed to be at most this long. */
const FOLD_MARGIN = 256;

interface CompiledRule {
  readonly id: string;
  /** Sticky (y) when the rule has literals, global (g) when it runs over the whole layer. */
  readonly re: RegExp;
  /** How far a match can read around its start (null: unknown, match against the whole layer). */
  readonly reach: PatternReach | null;
}

/** A rule literal written backwards, or ROT13'd: marks a window worth undoing. */
type TransformKind = 'reversed' | 'rot13';

type Trigger =
  | { readonly kind: 'rule'; readonly rule: CompiledRule; readonly rest: Uint8Array; readonly ci: boolean }
  | { readonly kind: 'secret'; readonly group: PrefixGroup }
  | { readonly kind: 'reversed' }
  | { readonly kind: 'rot13' };

const REVERSED_TRIGGER: Trigger = { kind: 'reversed' };
const ROT13_TRIGGER: Trigger = { kind: 'rot13' };

/**
 * What a layer is matched against. Layers that join separate values are matched
 * by half: 'secrets' (every value glued together: an unrelated value appended to
 * a near-miss token would make a minimum-length rule fire) or 'rules' (only
 * whitespace-free neighbours joined). Text transforms of a layer inherit its
 * mode; decodings (base64, compression...) produce new data and match 'all'.
 */
type Match = 'all' | 'secrets' | 'rules';

interface Layer {
  readonly bytes: Buffer;
  readonly chain: readonly string[];
  readonly depth: number;
  /** Text-like: worth percent/JSON unescaping. */
  readonly text: boolean;
  /** `+` means space here (a URL or a form body). */
  readonly form: boolean;
  /** Check whether the layer itself is compressed data. */
  readonly sniff: boolean;
  readonly match: Match;
  /** Whole data (a body, a decoded blob), not a window: if it looks like JSON, its string values are joined. */
  readonly structured: boolean;
  /** A root whose parameter values are joined: the URL's query or a form body. */
  readonly params: 'query' | 'form' | null;
  /**
   * Matched but not decoded further: windows of joined values. Their literal or
   * prefix was visible in the raw values, so the pieces around it are raw too.
   */
  readonly leaf: boolean;
  /** The layer as latin1 text, made where needed. */
  latin1?: Latin1View;
  /** Windows around backwards / ROT13'd rule literals seen while scanning the layer. */
  reversed?: Array<[number, number]>;
  rot13?: Array<[number, number]>;
  /** Rule-literal and secret-prefix positions seen while scanning a layer whose values get joined (undefined: none); null past MAX_KEY_HITS. */
  keyHits?: KeyHits | null;
}

const NO_HITS: KeyHits = { rules: [], secrets: [] };

/**
 * How far past a literal a split credential is followed across joined values:
 * past every API token format (a fine-grained GitHub PAT is 93 characters), not
 * a whole PEM key or a long JWT.
 */
const JOIN_RULE_REACH = 320;

/** Key positions recorded per layer before joining falls back to searching the joined values afresh. */
const MAX_KEY_HITS = 1 << 16;

interface RootOptions {
  form: boolean;
  match?: Match;
  structured?: boolean;
  params?: 'query' | 'form' | null;
  leaf?: boolean;
}

/** Where findings go during one scan: dedupes per (kind, id, location, field), tracks the decode budget. */
class ScanRun {
  readonly findings: ScanFinding[] = [];
  readonly #seen = new Set<string>();
  /** (kind, id, location) already reported under some field: a secondary target (joined headers) adds nothing new. */
  readonly #seenAnyField = new Set<string>();
  budget: number;
  constructor(budget: number) {
    this.budget = budget;
  }
  add(kind: ScanFinding['kind'], id: string, target: Target, chain: readonly string[]): void {
    const key = `${kind}\0${id}\0${target.location}\0${target.field ?? ''}`;
    const anyField = `${kind}\0${id}\0${target.location}`;
    if (this.#seen.has(key) || (target.secondary && this.#seenAnyField.has(anyField))) return;
    this.#seen.add(key);
    this.#seenAnyField.add(anyField);
    const f: ScanFinding = { kind, id, location: target.location, encoding: chain.length > 0 ? chain.join('>') : 'raw' };
    if (target.field !== undefined) f.field = target.field;
    this.findings.push(f);
    if (kind === 'rule') target.rulesFound.add(id);
  }
}

/** One root being scanned (the URL, one header, the body). */
interface Target {
  readonly location: ScanLocation;
  readonly field: string | undefined;
  readonly rulesFound: Set<string>;
  /** Joined header values: only what no single header showed is reported. */
  readonly secondary: boolean;
}

function target(location: ScanLocation, field?: string, secondary = false): Target {
  return { location, field, rulesFound: new Set(), secondary };
}

function positiveInt(name: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidScannerOptions(`${name} must be a positive integer, got ${v}`);
  return v;
}

/**
 * Rules with at most this many distinct 4-byte literal heads also get reversed and
 * ROT13 triggers; rules with more (literals expanded over a character class, such
 * as Azure's) would crowd the prefix index's filter for little gain.
 */
const MAX_TRANSFORMED_KEYS_PER_RULE = 64;

function compileRules(rules: readonly LeakRule[]): {
  compiled: CompiledRule[];
  triggers: Array<[number, Trigger]>;
  global: CompiledRule[];
} {
  const ids = new Set<string>();
  const triggers: Array<[number, Trigger]> = [];
  const transformed = new Map<string, Set<Trigger>>();
  const addTransformed = (key: string, trig: Trigger) => {
    const set = transformed.get(key) ?? new Set();
    transformed.set(key, set.add(trig));
  };
  const global: CompiledRule[] = [];
  const compiled: CompiledRule[] = [];
  for (const rule of rules) {
    if (!/^[a-z0-9_]{1,64}$/.test(rule.id)) throw new InvalidLeakRule(`rule id "${rule.id}" must be snake_case (a-z, 0-9, _)`);
    if (ids.has(rule.id)) throw new InvalidLeakRule(`rule id ${rule.id} is used twice`);
    ids.add(rule.id);
    assertBoundedPattern(rule.id, rule.pattern.source);
    const ci = rule.pattern.flags.includes('i');
    const flags = rule.pattern.flags.replace(/[gy]/g, '');
    const literals = rule.literals ?? [];
    if (literals.length === 0) {
      const g = { id: rule.id, re: new RegExp(rule.pattern.source, flags + 'g'), reach: null };
      global.push(g);
      compiled.push(g);
      continue;
    }
    const c = { id: rule.id, re: new RegExp(rule.pattern.source, flags + 'y'), reach: patternReach(rule.pattern.source, flags) };
    compiled.push(c);
    const keys = new Set<string>();
    for (const lit of literals) {
      // eslint-disable-next-line no-control-regex
      if (lit.length < 4 || !/^[\x00-\xff]+$/.test(lit))
        throw new InvalidLeakRule(
          `rule ${rule.id}: literal "${lit}" must be at least 4 latin1 characters (expand it with the characters that follow)`,
        );
      const rest = Buffer.from(ci ? lit.slice(4).toLowerCase() : lit.slice(4), 'latin1');
      for (const head of ci ? caseVariants(lit.slice(0, 4)) : [lit.slice(0, 4)]) {
        const dedupe = `${head}\0${rest.toString('latin1')}`;
        if (keys.has(dedupe)) continue;
        keys.add(dedupe);
        triggers.push([key4OfLatin1(head), { kind: 'rule', rule: c, rest, ci }]);
      }
    }
    // Backwards, a literal's last four characters lead (`_phg` for `ghp_`); ROT13 keeps its position.
    if (!ci && new Set(literals.map((l) => l.slice(0, 4))).size <= MAX_TRANSFORMED_KEYS_PER_RULE)
      for (const lit of literals) {
        addTransformed([...lit.slice(-4)].reverse().join(''), REVERSED_TRIGGER);
        const r = rot13(lit.slice(0, 4));
        if (r !== lit.slice(0, 4)) addTransformed(r, ROT13_TRIGGER);
      }
  }
  for (const [key, set] of transformed) for (const trig of set) triggers.push([key4OfLatin1(key), trig]);
  return { compiled, triggers, global };
}

/**
 * RULE_KEY | SECRET_KEY for the triggers of one key. With `bytes`, a rule counts
 * only if the rest of its literal follows at `at`, or as much of it as comes
 * before the end of a value (a quote, `&`, `;` or newline): the rest may then
 * continue in the next value.
 */
function kindsOf(triggers: readonly Trigger[], bytes?: Uint8Array, at = 0): number {
  let kind = 0;
  for (const trig of triggers)
    if (trig.kind === 'secret') kind |= SECRET_KEY;
    else if (trig.kind === 'rule' && (bytes === undefined || restUntilValueEnd(bytes, at + 4, trig.rest, trig.ci))) kind |= RULE_KEY;
  return kind;
}

/** Value terminators in JSON, query strings, form bodies and joined headers. */
const VALUE_END = new Uint8Array(256);
for (const c of '"&;\n') VALUE_END[c.charCodeAt(0)] = 1;

function restUntilValueEnd(bytes: Uint8Array, at: number, rest: Uint8Array, ci: boolean): boolean {
  // `{{secret:NAME}}`: a placeholder, what the scanner sees in every request before injection, is no credential.
  if (at >= 6 && bytes[at - 5] === 0x7b && bytes[at - 6] === 0x7b) return false;
  for (let j = 0; j < rest.length; j++) {
    if (at + j >= bytes.length) return true;
    let b = bytes[at + j]!;
    if (ci && b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (b !== rest[j]) return VALUE_END[bytes[at + j]!] === 1;
  }
  return true;
}

/** Characters of a credential token: how far a transformed literal's token must reach to be worth a window. */
const TOKEN_CHAR = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.:~') TOKEN_CHAR[c.charCodeAt(0)] = 1;
/** Token characters needed beside a transformed literal (every built-in format has at least this many). */
const TRANSFORMED_MIN_TOKEN = 12;
/** Context kept on the literal's other side (what a rule's lookbehind checks). */
const TRANSFORMED_CONTEXT = 128;
/** Windows recorded per layer before the whole layer is transformed instead. */
const MAX_TRANSFORM_HITS = 4096;

function tokenRunBefore(bytes: Uint8Array, at: number, want: number): boolean {
  for (let i = 1; i <= want; i++) if (at - i < 0 || TOKEN_CHAR[bytes[at - i]!] === 0) return false;
  return true;
}

function tokenRunAfter(bytes: Uint8Array, at: number, want: number): boolean {
  for (let i = 0; i < want; i++) if (at + i >= bytes.length || TOKEN_CHAR[bytes[at + i]!] === 0) return false;
  return true;
}

function caseVariants(s: string): string[] {
  let out = [''];
  for (const ch of s) {
    const alts = [...new Set([ch.toLowerCase(), ch.toUpperCase()])];
    out = out.flatMap((p) => alts.map((a) => p + a));
  }
  return out;
}

function restMatches(bytes: Uint8Array, at: number, rest: Uint8Array, ci: boolean): boolean {
  if (at + rest.length > bytes.length) return false;
  for (let j = 0; j < rest.length; j++) {
    let b = bytes[at + j]!;
    if (ci && b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (b !== rest[j]) return false;
  }
  return true;
}

function headerValue(headers: ScanRequestInput['headers'], name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    return Array.isArray(v) ? v.join(',') : v;
  }
  return undefined;
}

/** Windows larger than this are not worth it: the whole layer's text is made (once) instead. */
const MAX_RULE_WINDOW = 16 * 1024;

/**
 * The sticky match of `rule` at `at` in a layer: against a window of its text
 * that holds all the rule can read from there (see patternReach), which gives
 * the same result as the whole text without making a string of a large layer.
 */
function ruleMatchAt(text: Latin1View, rule: CompiledRule, at: number): RegExpExecArray | null {
  const n = text.bytes.length;
  const reach = rule.reach;
  if (reach === null || reach.behind + reach.ahead > MAX_RULE_WINDOW) {
    rule.re.lastIndex = at;
    return rule.re.exec(text.all());
  }
  const from = Math.max(0, at - reach.behind);
  rule.re.lastIndex = at - from;
  return rule.re.exec(text.slice(from, Math.min(n, at + reach.ahead)));
}

export class LeakScanner {
  readonly #rules: readonly CompiledRule[];
  readonly #ruleTriggers: ReadonlyArray<[number, Trigger]>;
  readonly #globalRules: readonly CompiledRule[];
  readonly #maxDepth: number;
  readonly #maxScan: number;
  readonly #maxDecompressed: number;
  readonly #maxDecoded: number;
  #matcher: ExactMatcher = new ExactMatcher([]);
  #index!: Prefix4Index<Trigger>;
  #margin = RULE_WINDOW;
  /** How far past its prefix a secret form reaches, when joining values (0: no secrets). */
  #secretReach = 0;
  /**
   * Margin of Unicode folding windows: a character folding can reveal is part of
   * the token it hides, so the window needs to hold that token (the longest
   * secret form, or a credential of FOLD_MARGIN), not a rule's context.
   */
  #foldMargin = FOLD_MARGIN;

  constructor(opts: LeakScannerOptions = {}) {
    const { compiled, triggers, global } = compileRules(opts.rules ?? BUILTIN_RULES);
    this.#rules = compiled;
    this.#ruleTriggers = triggers;
    this.#globalRules = global;
    const depth = opts.maxDecodeDepth ?? 3;
    if (!Number.isSafeInteger(depth) || depth < 0 || depth > 8)
      throw new InvalidScannerOptions(`maxDecodeDepth must be an integer from 0 to 8, got ${depth}`);
    this.#maxDepth = depth;
    this.#maxScan = positiveInt('maxScanBytes', opts.maxScanBytes, 16 * 1024 * 1024);
    this.#maxDecompressed = positiveInt('maxDecompressedBytes', opts.maxDecompressedBytes, this.#maxScan);
    this.#maxDecoded = positiveInt('maxDecodedBytes', opts.maxDecodedBytes, 4 * this.#maxScan);
    this.#rebuild();
  }

  /** Largest root layer scanned; a larger one is reported as scan_limit_exceeded. */
  get maxScanBytes(): number {
    return this.#maxScan;
  }

  /** Ids of the rules in force. */
  get ruleIds(): readonly string[] {
    return this.#rules.map((r) => r.id);
  }

  /** The exact-match index in force (for a ResponseRedactor). */
  get exactMatcher(): ExactMatcher {
    return this.#matcher;
  }

  /** Replaces the exact-match index with these fingerprints (the vault's ScanIndex). */
  setFingerprints(fingerprints: readonly SecretFingerprint[]): void {
    this.#matcher = new ExactMatcher(fingerprints);
    this.#rebuild();
  }

  #rebuild(): void {
    const entries: Array<[number, Trigger]> = [...this.#ruleTriggers];
    for (const [k, group] of this.#matcher.groups) entries.push([k, { kind: 'secret', group }]);
    const index = new Prefix4Index(entries);
    this.#index = index;
    this.#keyKinds = {
      filter: index.filter,
      kinds: (key) => {
        const triggers = index.get(key);
        return triggers === undefined ? 0 : kindsOf(triggers);
      },
    };
    // A match involving a decoded escape lies within the longest match length of it.
    this.#margin = Math.max(RULE_WINDOW, this.#matcher.maxLength + 16);
    this.#secretReach = this.#matcher.maxLength;
    this.#foldMargin = Math.max(FOLD_MARGIN, this.#matcher.maxLength + 16);
  }

  /** Scans the URL, every header (as "name: value") and the body after undoing its Content-Encoding. */
  /**
   * Scans the URL (and its query values joined), every header (as "name: value";
   * then all header values joined, in order) and the body after undoing its
   * Content-Encoding (and its JSON string values or form values joined).
   */
  scanRequest(req: ScanRequestInput): ScanFinding[] {
    const run = new ScanRun(this.#maxDecoded);
    if (req.url) this.#scanRoot(run, Buffer.from(req.url, 'utf8'), target('url'), [], { form: true, params: 'query' });
    const values: string[] = [];
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined) continue;
      const field = name.toLowerCase();
      for (const v of Array.isArray(value) ? value : [value]) {
        this.#scanRoot(run, Buffer.from(`${name}: ${v}`, 'utf8'), target('header', field), [], { form: false });
        values.push(v);
      }
    }
    if (values.length > 1) this.#scanJoinedHeaders(run, values);
    if (req.body.length > 0) this.#scanBody(run, req);
    return run.findings;
  }

  /**
   * Scans one piece of text or bytes as a root layer (no Content-Encoding handling).
   * `url` treats `+` as a space and joins query values; `body` joins JSON string values.
   */
  scanText(text: string | Uint8Array, location: ScanLocation, field?: string): ScanFinding[] {
    const run = new ScanRun(this.#maxDecoded);
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : asBuffer(text);
    const url = location === 'url';
    this.#scanRoot(run, bytes, target(location, field), [], { form: url, params: url ? 'query' : null, structured: location === 'body' });
    return run.findings;
  }

  /**
   * Where `text` itself (not a decoded layer) matches a rule or holds an exact
   * secret form: byte ranges of its UTF-8, by start, overlaps included. What a
   * redactor replaces first (see redactText).
   */
  matchSpans(text: string | Uint8Array): Array<{ start: number; end: number; kind: ScanFinding['kind']; id: string }> {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : asBuffer(text);
    const out: Array<{ start: number; end: number; kind: ScanFinding['kind']; id: string }> = [];
    const view = new Latin1View(bytes);
    this.#index.scan(bytes, (start, triggers) => {
      for (const trig of triggers) {
        if (trig.kind === 'secret') {
          confirmAt(bytes, start, trig.group, (ref, length) => out.push({ start, end: start + length, kind: 'secret', id: ref.name }));
        } else if (trig.kind === 'rule' && restMatches(bytes, start + 4, trig.rest, trig.ci)) {
          const m = ruleMatchAt(view, trig.rule, start);
          if (m !== null) out.push({ start, end: start + m[0].length, kind: 'rule', id: trig.rule.id });
        }
      }
    });
    for (const rule of this.#globalRules) {
      const str = view.all();
      rule.re.lastIndex = 0;
      for (let m = rule.re.exec(str); m !== null; m = rule.re.exec(str)) {
        out.push({ start: m.index, end: m.index + m[0].length, kind: 'rule', id: rule.id });
        if (m[0].length === 0) rule.re.lastIndex++;
      }
    }
    return out.sort((a, b) => a.start - b.start || b.end - a.end);
  }

  #scanBody(run: ScanRun, req: ScanRequestInput): void {
    const body = target('body');
    if (req.body.length > this.#maxScan) {
      run.add('rule', SCAN_LIMIT_EXCEEDED, body, []);
      return;
    }
    // Codings are listed in the order applied, so undo them from the last.
    const codings = (headerValue(req.headers, 'content-encoding') ?? '')
      .split(',')
      .map((c) => c.trim().toLowerCase())
      .filter((c) => c !== '' && c !== 'identity')
      .reverse();
    let bytes = asBuffer(req.body);
    const chain: string[] = [];
    for (const coding of codings) {
      const label = coding === 'x-gzip' ? 'gzip' : coding;
      const d = decompress(coding, bytes, Math.min(this.#maxDecompressed, this.#maxScan));
      if (!d.ok) {
        run.add('rule', failureId(d), body, [...chain, label]);
        return;
      }
      bytes = d.bytes;
      chain.push(label);
    }
    const type = (headerValue(req.headers, 'content-type') ?? '').toLowerCase();
    const form = type.startsWith('application/x-www-form-urlencoded');
    this.#scanRoot(run, bytes, body, chain, { form, params: form ? 'form' : null, structured: true });
  }

  #scanRoot(run: ScanRun, bytes: Buffer, t: Target, chain: readonly string[], opts: RootOptions): void {
    if (bytes.length > this.#maxScan) {
      run.add('rule', SCAN_LIMIT_EXCEEDED, t, chain);
      return;
    }
    const queue: Layer[] = [
      {
        bytes,
        chain,
        depth: 0,
        text: !looksBinary(bytes),
        form: opts.form,
        sniff: true,
        match: opts.match ?? 'all',
        structured: opts.structured ?? false,
        params: opts.params ?? null,
        leaf: opts.leaf ?? false,
      },
    ];
    for (let layer = queue.shift(); layer !== undefined; layer = queue.shift()) {
      this.#scanLayer(run, layer, t);
      if (!layer.leaf && layer.depth < this.#maxDepth && !this.#derive(run, layer, t, queue)) return;
    }
  }

  /** Windows of the values `spans` of `source` joined in order (see joinedWindows); `hits`: its key positions, if known. */
  #join(source: Buffer, spans: readonly number[], hits: KeyHits | null): { secrets: Buffer | null; rules: Buffer | null | 'limit' } {
    const opts = { secretReach: this.#secretReach, ruleReach: JOIN_RULE_REACH, context: TRANSFORMED_CONTEXT };
    return joinedWindows(source, spans, hits ?? this.#keyHits(source), this.#keyKinds, opts);
  }

  /** Rule-literal heads and secret-form prefixes in `bytes`. */
  readonly #keyHits = (bytes: Buffer): KeyHits => {
    const hits: KeyHits = { rules: [], secrets: [] };
    this.#index.scan(bytes, (start, triggers) => {
      const kind = kindsOf(triggers, bytes, start);
      if (kind & RULE_KEY) hits.rules.push(start);
      if (kind & SECRET_KEY) hits.secrets.push(start);
    });
    return hits;
  };

  /** The prefix index as joining asks it (rebuilt with it). */
  #keyKinds!: KeyKinds;

  /** Scans the joined windows of all header values, in order, as roots of their own. */
  #scanJoinedHeaders(run: ScanRun, values: readonly string[]): void {
    const t = target('header', undefined, true);
    const chain = ['header_values'];
    const source = Buffer.from(values.join('\n'), 'utf8');
    const spans: number[] = [];
    let at = 0;
    for (const v of values) {
      const len = Buffer.byteLength(v, 'utf8');
      spans.push(at, at + len);
      at += len + 1;
    }
    const j = this.#join(source, spans, null);
    for (const [bytes, match] of [
      [j.secrets, 'secrets'],
      [j.rules, 'rules'],
    ] as const) {
      if (bytes === null) continue;
      if (bytes === 'limit' || bytes.length > run.budget) {
        run.add('rule', SCAN_LIMIT_EXCEEDED, t, chain);
        return;
      }
      run.budget -= bytes.length;
      this.#scanRoot(run, bytes, t, chain, { form: false, match, leaf: true });
    }
  }

  #scanLayer(run: ScanRun, layer: Layer, t: Target): void {
    const bytes = layer.bytes;
    const chain = layer.chain;
    const rules = layer.match !== 'secrets';
    const secrets = layer.match !== 'rules';
    // Windows around transformed literals, and key positions for joining, only matter if the layer may still be decoded.
    const derives = !layer.leaf && layer.depth < this.#maxDepth;
    // A window already read backwards (or ROT13'd) shows the literal the right way round: undoing it again gives the parent.
    const lastStep = chain[chain.length - 1];
    const transforms = rules && derives && lastStep !== 'reversed' && lastStep !== 'rot13';
    const joins = (layer.structured || layer.params !== null) && derives;
    this.#index.scan(bytes, (start, triggers) => {
      // For joining: whether a rule literal (or as much of it as the value holds) or a secret prefix starts here.
      let keys = 0;
      for (const trig of triggers) {
        if (trig.kind === 'secret') {
          keys |= SECRET_KEY;
          if (secrets)
            confirmAt(bytes, start, trig.group, (ref) =>
              run.add('secret', ref.name, t, ref.encoding === 'raw' ? chain : [...chain, ref.encoding]),
            );
          continue;
        }
        if (trig.kind === 'reversed' || trig.kind === 'rot13') {
          if (transforms) this.#noteTransformed(layer, trig.kind, start);
          continue;
        }
        const literal = restMatches(bytes, start + 4, trig.rest, trig.ci);
        if (joins && (literal || restUntilValueEnd(bytes, start + 4, trig.rest, trig.ci))) keys |= RULE_KEY;
        if (!rules || !literal) continue;
        const rule = trig.rule;
        if (t.rulesFound.has(rule.id)) continue;
        if (ruleMatchAt((layer.latin1 ??= new Latin1View(bytes)), rule, start) !== null) run.add('rule', rule.id, t, chain);
      }
      if (joins && keys !== 0) this.#noteKeys(layer, start, keys);
    });
    if (!rules) return;
    for (const rule of this.#globalRules) {
      if (t.rulesFound.has(rule.id)) continue;
      rule.re.lastIndex = 0;
      if (rule.re.test((layer.latin1 ??= new Latin1View(bytes)).all())) run.add('rule', rule.id, t, chain);
    }
  }

  #noteKeys(layer: Layer, at: number, kind: number): void {
    if (layer.keyHits === null) return;
    const hits = (layer.keyHits ??= { rules: [], secrets: [] });
    if (kind & RULE_KEY) hits.rules.push(at);
    if (kind & SECRET_KEY) hits.secrets.push(at);
    if (hits.rules.length + hits.secrets.length > MAX_KEY_HITS) layer.keyHits = null;
  }

  /** Records the window around a backwards (token before it) or ROT13'd (token after it) rule literal at `at`. */
  #noteTransformed(layer: Layer, kind: TransformKind, at: number): void {
    const bytes = layer.bytes;
    const list = kind === 'reversed' ? (layer.reversed ??= []) : (layer.rot13 ??= []);
    if (list.length >= MAX_TRANSFORM_HITS) {
      list.length = 1;
      list[0] = [0, bytes.length];
      return;
    }
    if (kind === 'reversed') {
      if (tokenRunBefore(bytes, at, TRANSFORMED_MIN_TOKEN)) list.push([at - this.#margin, at + 4 + TRANSFORMED_CONTEXT]);
    } else if (tokenRunAfter(bytes, at + 4, TRANSFORMED_MIN_TOKEN)) list.push([at - TRANSFORMED_CONTEXT, at + this.#margin]);
  }

  /**
   * Queues one child of `layer`. Text transforms keep the layer's match mode;
   * decodings pass 'all'. Returns false when the decode budget ran out (a limit
   * finding is recorded).
   */
  #child(
    c: DeriveContext,
    steps: readonly string[],
    out: Buffer,
    text: boolean,
    match: Match,
    structured = false,
    form = false,
    sniff = false,
    leaf = false,
  ): boolean {
    const next = [...c.layer.chain, ...steps];
    if (out.length > c.run.budget) {
      c.run.add('rule', SCAN_LIMIT_EXCEEDED, c.t, next);
      return false;
    }
    c.run.budget -= out.length;
    c.queue.push({ bytes: out, chain: next, depth: c.layer.depth + 1, text, form, sniff, match, structured, params: null, leaf });
    return true;
  }

  /** A decoded run or stream (new data: matched in full, and worth parsing as JSON if text). */
  #decoded(c: DeriveContext, steps: readonly string[], out: Buffer, text: boolean, sniff = false): boolean {
    return this.#child(c, steps, out, text, 'all', text, false, sniff);
  }

  #inflate(c: DeriveContext, format: CompressionFormat, data: Buffer, steps: readonly string[]): boolean {
    const d = decompress(format, data, Math.min(this.#maxDecompressed, c.run.budget));
    // Sniffed data that does not decompress was not compressed after all.
    if (!d.ok && d.reason === 'corrupt') return true;
    if (!d.ok) {
      c.run.add('rule', SCAN_LIMIT_EXCEEDED, c.t, [...c.layer.chain, ...steps]);
      return false;
    }
    // A decompression sniffed inside a decoded run counts as part of that decode step.
    return this.#decoded(c, steps, d.bytes, !looksBinary(d.bytes), true);
  }

  /**
   * Queues the windows of the values `spans` of `source` joined (secrets-only and
   * rules-only halves, as leaves). `hits`: the key positions in `source` if its
   * scan recorded them (undefined there means none), null to search it here.
   */
  #joined(c: DeriveContext, steps: readonly string[], source: Buffer, spans: readonly number[], hits: KeyHits | null): boolean {
    const layer = c.layer;
    const j = this.#join(source, spans, hits);
    if (j.rules === 'limit') {
      c.run.add('rule', SCAN_LIMIT_EXCEEDED, c.t, [...layer.chain, ...steps]);
      return false;
    }
    if (j.secrets !== null && layer.match !== 'rules' && !this.#child(c, steps, j.secrets, true, 'secrets', false, false, false, true))
      return false;
    return j.rules === null || layer.match === 'secrets' || this.#child(c, steps, j.rules, true, 'rules', false, false, false, true);
  }

  /** Queues the decoded children of a layer. Returns false when the decode budget ran out (a limit finding is recorded). */
  #derive(run: ScanRun, layer: Layer, t: Target, queue: Layer[]): boolean {
    const c: DeriveContext = { run, layer, t, queue };
    const bytes = layer.bytes;
    if (layer.sniff) {
      const format = sniffCompression(bytes);
      if (format !== null && !this.#inflate(c, format, bytes, [format])) return false;
    }
    if (layer.text && !this.#deriveText(c)) return false;
    if (layer.reversed !== undefined) {
      const windows = mergeWindows(layer.reversed, bytes.length);
      if (windows !== null && !this.#child(c, ['reversed'], decodeWindows(bytes, windows, reverseSegment), layer.text, layer.match))
        return false;
    }
    if (layer.rot13 !== undefined) {
      const windows = mergeWindows(layer.rot13, bytes.length);
      if (windows !== null && !this.#child(c, ['rot13'], decodeWindows(bytes, windows, rot13Segment), layer.text, layer.match))
        return false;
    }
    if (!this.#deriveJson(c)) return false;
    if (layer.params !== null) {
      const query = layer.params === 'query';
      const spans = paramValues(bytes, query);
      if (!this.#joined(c, [query ? 'query_values' : 'form_values'], bytes, spans, layer.keyHits === undefined ? NO_HITS : layer.keyHits))
        return false;
    }
    const runs = decodeRuns(bytes, (layer.latin1 ??= new Latin1View(bytes)));
    for (const g of runs.groups) if (!this.#decoded(c, g.utf16 ? [g.encoding, g.utf16] : [g.encoding], g.bytes, g.text)) return false;
    for (const r of runs.compressed) if (!this.#inflate(c, r.format, r.data, [r.encoding, r.format])) return false;
    if (!layer.text) {
      const u = utf16Decode(bytes);
      if (u !== null && !this.#decoded(c, [u.encoding], u.bytes, true)) return false;
    }
    return true;
  }

  /**
   * Joins the string values of a layer that looks like JSON. JSON nested in its
   * strings (tool-call arguments) is unescaped and its own values joined too,
   * reported as `json>json_values`; everything else about it is decoded from the
   * layer's JSON-unescaped child already.
   */
  #deriveJson(c: DeriveContext): boolean {
    const layer = c.layer;
    const bytes = layer.bytes;
    if (!layer.structured || !layer.text || !looksLikeJson(bytes)) return true;
    const { spans, nested } = jsonStringValues(bytes);
    if (!this.#joined(c, ['json_values'], bytes, spans, layer.keyHits === undefined ? NO_HITS : layer.keyHits)) return false;
    return this.#joinNested(c, bytes, nested, ['json'], MAX_JSON_NESTING);
  }

  #joinNested(c: DeriveContext, src: Buffer, nested: readonly number[], chain: readonly string[], levels: number): boolean {
    for (let k = 0; k < nested.length && levels > 0; k += 2) {
      const inner = unescapeNested(src, nested[k]!, nested[k + 1]!);
      const values = jsonStringValues(inner);
      if (!this.#joined(c, [...chain, 'json_values'], inner, values.spans, null)) return false;
      if (!this.#joinNested(c, inner, values.nested, [...chain, 'json'], levels - 1)) return false;
    }
    return true;
  }

  /** The text transforms of a text layer: percent, form, JSON and HTML unescaping, Unicode folding, separator removal. */
  #deriveText(c: DeriveContext): boolean {
    const { layer, run, t } = c;
    const { bytes, match } = layer;
    const pct = percentDecode(bytes, false, this.#margin);
    if (pct !== null && !this.#child(c, ['percent'], pct, true, match)) return false;
    if (layer.form) {
      const form = percentDecode(bytes, true, this.#margin);
      if (form !== null && !(pct !== null && form.equals(pct)) && !this.#child(c, ['form'], form, true, match)) return false;
    }
    const json = jsonUnescape(bytes, this.#margin, !this.#matcher.jsonSensitive);
    if (json !== null && !this.#child(c, ['json'], json, true, match)) return false;
    const html = htmlDecode(bytes, this.#margin, true);
    if (html !== null && !this.#child(c, ['html'], html, true, match)) return false;
    if (!isAscii(bytes)) {
      const folded = unicodeFold(bytes, this.#foldMargin, run.budget);
      if (folded === 'limit') {
        run.add('rule', SCAN_LIMIT_EXCEEDED, t, [...layer.chain, 'unicode']);
        return false;
      }
      if (folded !== null && !this.#child(c, ['unicode'], folded, true, match)) return false;
    }
    const separated = separatedDecode(bytes);
    return separated === null || this.#child(c, ['separated'], separated, true, match);
  }
}

/** What deriving one layer's children works with. */
interface DeriveContext {
  readonly run: ScanRun;
  readonly layer: Layer;
  readonly t: Target;
  readonly queue: Layer[];
}

function failureId(d: Extract<Decompressed, { ok: false }>): string {
  return d.reason === 'limit' ? SCAN_LIMIT_EXCEEDED : d.reason === 'unsupported' ? CONTENT_ENCODING_UNSUPPORTED : CONTENT_DECODING_FAILED;
}
