// The leak scanner: looks for credential formats (rules.ts) and for vault secrets
// (exact.ts) in a request's URL, headers and body, through the encodings they may
// be wrapped in (decode.ts). Pure and synchronous; egress calls it before
// injecting credentials, so `{{secret:NAME}}` placeholders are what it sees.
//
// A scan is a breadth-first walk over layers. The root layer is the URL, one
// header line ("name: value") or the body after undoing Content-Encoding; each
// layer is read once by a single pass of the combined 4-byte prefix index (rule
// literals and secret prefixes together), then, while the depth allows, its
// percent-decoded, form-decoded, JSON-unescaped, base64/base64url/hex-decoded and
// decompressed children are queued. Every decoded byte counts against a per-scan
// budget; running out, or any decompression exceeding its cap, yields a
// scan_limit_exceeded finding so that egress refuses rather than forwards unscanned.
//
// Percent and JSON layers are decoded only in windows around their escapes
// (margin: 1 KiB or the longest secret form, whichever is larger), since text far
// from an escape is the same as in the parent layer, already scanned. JSON's
// \" \\ \n \r \t escapes only open windows when some vault secret contains a
// character JSON escapes; rules match those escapes in the raw text themselves.
//
// Known limits: an encoding nested deeper than maxDecodeDepth, a match involving
// an escape but longer than the window margin, base64 of a secret at an offset not
// aligned to 3 bytes inside a larger blob (its decoded layer is scanned instead),
// quoted-printable, and transformations beyond encodings (reversal, splitting,
// encryption) are not seen. It raises the bar; it cannot stop a determined sender.
import { Buffer } from 'node:buffer';
import {
  asBuffer,
  decodeRuns,
  decompress,
  jsonUnescape,
  looksBinary,
  percentDecode,
  sniffCompression,
  type CompressionFormat,
  type Decompressed,
} from './decode.ts';
import { ExactMatcher, confirmAt, type PrefixGroup } from './exact.ts';
import type { SecretFingerprint } from './fingerprint.ts';
import { Prefix4Index, key4OfLatin1 } from './prefix-index.ts';
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

interface CompiledRule {
  readonly id: string;
  /** Sticky (y) when the rule has literals, global (g) when it runs over the whole layer. */
  readonly re: RegExp;
}

type Trigger =
  | { readonly kind: 'rule'; readonly rule: CompiledRule; readonly rest: Uint8Array; readonly ci: boolean }
  | { readonly kind: 'secret'; readonly group: PrefixGroup };

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
  str?: string;
}

/** Where findings go during one scan: dedupes per (kind, id, location, field), tracks the decode budget. */
class ScanRun {
  readonly findings: ScanFinding[] = [];
  readonly #seen = new Set<string>();
  budget: number;
  constructor(budget: number) {
    this.budget = budget;
  }
  add(kind: ScanFinding['kind'], id: string, target: Target, chain: readonly string[]): void {
    const key = `${kind}\0${id}\0${target.location}\0${target.field ?? ''}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
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
}

function target(location: ScanLocation, field?: string): Target {
  return { location, field, rulesFound: new Set() };
}

function positiveInt(name: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidScannerOptions(`${name} must be a positive integer, got ${v}`);
  return v;
}

function compileRules(rules: readonly LeakRule[]): {
  compiled: CompiledRule[];
  triggers: Array<[number, Trigger]>;
  global: CompiledRule[];
} {
  const ids = new Set<string>();
  const triggers: Array<[number, Trigger]> = [];
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
      const g = { id: rule.id, re: new RegExp(rule.pattern.source, flags + 'g') };
      global.push(g);
      compiled.push(g);
      continue;
    }
    const c = { id: rule.id, re: new RegExp(rule.pattern.source, flags + 'y') };
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
  }
  return { compiled, triggers, global };
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

function latin1(bytes: Buffer): string {
  return bytes.toString('latin1');
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
    this.#index = new Prefix4Index(entries);
    // A match involving a decoded escape lies within the longest match length of it.
    this.#margin = Math.max(RULE_WINDOW, this.#matcher.maxLength + 16);
  }

  /** Scans the URL, every header (as "name: value") and the body after undoing its Content-Encoding. */
  scanRequest(req: ScanRequestInput): ScanFinding[] {
    const run = new ScanRun(this.#maxDecoded);
    if (req.url) this.#scanRoot(run, Buffer.from(req.url, 'utf8'), target('url'), [], true);
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined) continue;
      const field = name.toLowerCase();
      for (const v of Array.isArray(value) ? value : [value])
        this.#scanRoot(run, Buffer.from(`${name}: ${v}`, 'utf8'), target('header', field), [], false);
    }
    if (req.body.length > 0) this.#scanBody(run, req);
    return run.findings;
  }

  /** Scans one piece of text or bytes as a root layer (no Content-Encoding handling). `url` treats `+` as a space too. */
  scanText(text: string | Uint8Array, location: ScanLocation, field?: string): ScanFinding[] {
    const run = new ScanRun(this.#maxDecoded);
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : asBuffer(text);
    this.#scanRoot(run, bytes, target(location, field), [], location === 'url');
    return run.findings;
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
    this.#scanRoot(run, bytes, body, chain, type.startsWith('application/x-www-form-urlencoded'));
  }

  #scanRoot(run: ScanRun, bytes: Buffer, t: Target, chain: readonly string[], form: boolean): void {
    if (bytes.length > this.#maxScan) {
      run.add('rule', SCAN_LIMIT_EXCEEDED, t, chain);
      return;
    }
    const queue: Layer[] = [{ bytes, chain, depth: 0, text: !looksBinary(bytes), form, sniff: true }];
    for (let layer = queue.shift(); layer !== undefined; layer = queue.shift()) {
      this.#scanLayer(run, layer, t);
      if (layer.depth < this.#maxDepth && !this.#derive(run, layer, t, queue)) return;
    }
  }

  #scanLayer(run: ScanRun, layer: Layer, t: Target): void {
    const bytes = layer.bytes;
    const chain = layer.chain;
    this.#index.scan(bytes, (start, triggers) => {
      for (const trig of triggers) {
        if (trig.kind === 'secret') {
          confirmAt(bytes, start, trig.group, (ref) =>
            run.add('secret', ref.name, t, ref.encoding === 'raw' ? chain : [...chain, ref.encoding]),
          );
          continue;
        }
        const rule = trig.rule;
        if (t.rulesFound.has(rule.id) || !restMatches(bytes, start + 4, trig.rest, trig.ci)) continue;
        layer.str ??= latin1(bytes);
        rule.re.lastIndex = start;
        if (rule.re.test(layer.str)) run.add('rule', rule.id, t, chain);
      }
    });
    for (const rule of this.#globalRules) {
      if (t.rulesFound.has(rule.id)) continue;
      layer.str ??= latin1(bytes);
      rule.re.lastIndex = 0;
      if (rule.re.test(layer.str)) run.add('rule', rule.id, t, chain);
    }
  }

  /** Queues the decoded children of a layer. Returns false when the decode budget ran out (a limit finding is recorded). */
  #derive(run: ScanRun, layer: Layer, t: Target, queue: Layer[]): boolean {
    const { bytes, chain, depth } = layer;
    // A decompression sniffed inside a decoded run counts as part of that decode step.
    const push = (steps: readonly string[], out: Buffer, text: boolean, sniff: boolean): boolean => {
      const next = [...chain, ...steps];
      if (out.length > run.budget) {
        run.add('rule', SCAN_LIMIT_EXCEEDED, t, next);
        return false;
      }
      run.budget -= out.length;
      queue.push({ bytes: out, chain: next, depth: depth + 1, text, form: false, sniff });
      return true;
    };
    const inflate = (format: CompressionFormat, data: Buffer, steps: readonly string[]): boolean => {
      const d = decompress(format, data, Math.min(this.#maxDecompressed, run.budget));
      // Sniffed data that does not decompress was not compressed after all.
      if (!d.ok && d.reason === 'corrupt') return true;
      if (!d.ok) {
        run.add('rule', SCAN_LIMIT_EXCEEDED, t, [...chain, ...steps]);
        return false;
      }
      return push(steps, d.bytes, !looksBinary(d.bytes), true);
    };

    if (layer.sniff) {
      const format = sniffCompression(bytes);
      if (format !== null && !inflate(format, bytes, [format])) return false;
    }
    if (layer.text) {
      const pct = percentDecode(bytes, false, this.#margin);
      if (pct !== null && !push(['percent'], pct, true, false)) return false;
      if (layer.form) {
        const form = percentDecode(bytes, true, this.#margin);
        if (form !== null && !(pct !== null && form.equals(pct)) && !push(['form'], form, true, false)) return false;
      }
      const json = jsonUnescape(bytes, this.#margin, !this.#matcher.jsonSensitive);
      if (json !== null && !push(['json'], json, true, false)) return false;
    }
    const runs = decodeRuns(bytes, () => (layer.str ??= latin1(bytes)));
    for (const g of runs.groups) if (!push([g.encoding], g.bytes, g.text, false)) return false;
    for (const c of runs.compressed) if (!inflate(c.format, c.data, [c.encoding, c.format])) return false;
    return true;
  }
}

function failureId(d: Extract<Decompressed, { ok: false }>): string {
  return d.reason === 'limit' ? SCAN_LIMIT_EXCEEDED : d.reason === 'unsupported' ? CONTENT_ENCODING_UNSUPPORTED : CONTENT_DECODING_FAILED;
}
