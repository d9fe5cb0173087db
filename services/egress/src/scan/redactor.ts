// Streaming redaction of vault secrets (every fingerprinted form) in a response
// body. A secret may straddle chunk boundaries, so the last maxLength-1 bytes are
// held back until the next chunk (or end()) shows whether they start a match.
import { Buffer } from 'node:buffer';
import { asBuffer } from './decode.ts';
import type { ExactMatcher } from './exact.ts';

export interface ResponseRedactorOptions {
  /** Text put in place of a secret; default `[REDACTED:<name>]`. Must not depend on the value (it never sees it). */
  replacement?: (name: string) => string;
}

/**
 * Overlapping occurrences of a self-overlapping secret (say `abcabcab` in a long
 * `abcabc...` body) kept a redaction straddling every chunk boundary until the
 * hold-back passed its cap. Egress must abort the response: emitting the held
 * bytes unredacted, or half-redacted, could leak part of the secret.
 */
export class RedactionOverflow extends Error {
  constructor(limit: number) {
    super(`response redaction held back more than ${limit} bytes of overlapping secret matches; abort this response`);
    this.name = 'RedactionOverflow';
  }
}

export class RedactorEnded extends Error {
  constructor() {
    super('ResponseRedactor.push() called after end(); create a new redactor per response');
    this.name = 'RedactorEnded';
  }
}

interface Range {
  start: number;
  end: number;
  name: string;
}

const EMPTY = Buffer.alloc(0);

export class ResponseRedactor {
  readonly #matcher: ExactMatcher;
  readonly #hold: number;
  readonly #maxPending: number;
  readonly #replacement: (name: string) => Buffer;
  readonly #counts = new Map<string, number>();
  #pending: Buffer = EMPTY;
  #ended = false;

  constructor(matcher: ExactMatcher, opts: ResponseRedactorOptions = {}) {
    this.#matcher = matcher;
    this.#hold = Math.max(0, matcher.maxLength - 1);
    // Legitimate streams hold back under maxLength bytes; only chains of overlapping matches need more.
    this.#maxPending = Math.max(64 * 1024, 16 * matcher.maxLength);
    const rep = opts.replacement ?? ((name: string) => `[REDACTED:${name}]`);
    const cache = new Map<string, Buffer>();
    this.#replacement = (name) => {
      let b = cache.get(name);
      if (!b) cache.set(name, (b = Buffer.from(rep(name), 'utf8')));
      return b;
    };
  }

  /** Redactions so far, per secret name (for the audit record). */
  get redactions(): ReadonlyMap<string, number> {
    return this.#counts;
  }

  /** Bytes held back, waiting for the next chunk. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  /** Feeds one chunk; returns what is safe to emit now (possibly empty). */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#ended) throw new RedactorEnded();
    if (this.#hold === 0 && this.#pending.length === 0) return chunk;
    const data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : asBuffer(chunk);
    return this.#emit(data, data.length - this.#hold);
  }

  /** Flushes everything held back, redacted. */
  end(): Uint8Array {
    if (this.#ended) return EMPTY;
    this.#ended = true;
    const data = this.#pending;
    this.#pending = EMPTY;
    return data.length > 0 ? this.#emit(data, data.length) : EMPTY;
  }

  /**
   * Emits data[0, cut) with secrets replaced and keeps the rest. Any match that
   * starts before `cut` is complete (it is at most hold+1 long); a merged range
   * crossing `cut` is held back whole, so a longer overlapping secret that is not
   * complete yet is never split by emitting part of it.
   */
  #emit(data: Buffer, cut: number): Buffer {
    if (cut <= 0) {
      this.#pending = Buffer.from(data); // copy: the caller may reuse its chunk
      return EMPTY;
    }
    const parts: Buffer[] = [];
    let pos = 0;
    let emitEnd = cut;
    for (const r of this.#ranges(data)) {
      if (r.start >= emitEnd) break;
      if (r.end > cut && cut < data.length) {
        emitEnd = r.start;
        break;
      }
      if (r.start > pos) parts.push(data.subarray(pos, r.start));
      parts.push(this.#replacement(r.name));
      this.#counts.set(r.name, (this.#counts.get(r.name) ?? 0) + 1);
      pos = r.end;
    }
    if (emitEnd > pos) parts.push(data.subarray(pos, emitEnd));
    if (data.length - emitEnd > this.#maxPending) throw new RedactionOverflow(this.#maxPending);
    this.#pending = emitEnd < data.length ? Buffer.from(data.subarray(emitEnd)) : EMPTY;
    return parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
  }

  /** Matches merged into disjoint ranges, by start; a range is named after its first (longest at that start) match. */
  #ranges(data: Buffer): Range[] {
    const matches = this.#matcher.scan(data);
    matches.sort((a, b) => a.offset - b.offset || b.length - a.length);
    const out: Range[] = [];
    for (const m of matches) {
      const last = out[out.length - 1];
      const end = m.offset + m.length;
      if (last && m.offset < last.end) last.end = Math.max(last.end, end);
      else out.push({ start: m.offset, end, name: m.name });
    }
    return out;
  }
}
