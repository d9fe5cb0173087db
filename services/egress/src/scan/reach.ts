// How far a rule's pattern can read around the place a match starts, so that a
// literal hit can be confirmed against a window of a layer's text rather than a
// string of the whole layer (costly for large layers). Pure; no I/O.

/** Characters a pattern may inspect before a match start (`behind`) and from it (`ahead`, exclusive). */
export interface PatternReach {
  readonly behind: number;
  readonly ahead: number;
}

interface Node {
  /** Most characters consumed. */
  max: number;
  /** Furthest character inspected, as an exclusive offset from the node's start (>= max). */
  ahead: number;
  /** Most characters inspected before the node's start. */
  behind: number;
}

class Unsupported extends Error {}

/**
 * An upper bound on how far a regular expression can look from the place a match
 * starts, or null when the source uses something this reading does not follow
 * (anchors, backreferences, unbounded quantifiers, the v flag's class syntax):
 * the caller must then match against the whole input. With the bound, matching
 * at offset `at` of a text gives the same result as matching at the same place
 * in any window holding [at - behind, at + ahead) (or reaching the text's ends).
 */
export function patternReach(source: string, flags = ''): PatternReach | null {
  if (flags.includes('v')) return null;
  try {
    const p = new Parser(source);
    const n = p.alternation();
    if (p.i !== source.length) return null;
    return { behind: n.behind, ahead: n.ahead };
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
}

const ONE: Node = { max: 1, ahead: 1, behind: 0 };
/** \b and \B read one character on each side. */
const BOUNDARY: Node = { max: 0, ahead: 1, behind: 1 };

class Parser {
  i = 0;
  readonly s: string;
  constructor(s: string) {
    this.s = s;
  }

  alternation(): Node {
    const out: Node = this.sequence();
    while (this.s[this.i] === '|') {
      this.i++;
      const n = this.sequence();
      out.max = Math.max(out.max, n.max);
      out.ahead = Math.max(out.ahead, n.ahead);
      out.behind = Math.max(out.behind, n.behind);
    }
    return out;
  }

  sequence(): Node {
    const out: Node = { max: 0, ahead: 0, behind: 0 };
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') {
      const n = this.quantified(this.atom());
      // A later term starts at least as far in as an earlier one: its reach behind the match start is at most its own.
      out.ahead = Math.max(out.ahead, out.max + n.ahead);
      out.behind = Math.max(out.behind, n.behind);
      out.max += n.max;
    }
    return out;
  }

  quantified(n: Node): Node {
    const c = this.s[this.i];
    let hi: number;
    if (c === '?') {
      this.i++;
      hi = 1;
    } else if (c === '*' || c === '+') {
      throw new Unsupported();
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      if (m === null) return n; // a literal brace
      if (m[2] !== undefined && m[3] === '') throw new Unsupported();
      hi = Number(m[3] ?? m[1]);
      this.i += m[0].length;
    } else return n;
    if (this.s[this.i] === '?') this.i++; // lazy: the same bounds
    if (hi === 0) return { max: 0, ahead: 0, behind: 0 };
    return { max: n.max * hi, ahead: n.max * (hi - 1) + n.ahead, behind: n.behind };
  }

  atom(): Node {
    const c = this.s[this.i]!;
    if (c === '^' || c === '$') throw new Unsupported();
    if (c === '.') {
      this.i++;
      return ONE;
    }
    if (c === '[') return this.characterClass();
    if (c === '\\') return this.escape();
    if (c === '(') return this.group();
    this.i++;
    return ONE;
  }

  characterClass(): Node {
    for (this.i++; this.i < this.s.length && this.s[this.i] !== ']'; this.i++) if (this.s[this.i] === '\\') this.i++;
    if (this.i >= this.s.length) throw new Unsupported();
    this.i++;
    return ONE;
  }

  escape(): Node {
    const c = this.s[this.i + 1];
    if (c === undefined) throw new Unsupported();
    this.i += 2;
    if (c === 'b' || c === 'B') return BOUNDARY;
    if (/[1-9k]/.test(c)) throw new Unsupported(); // backreferences
    if (c === 'p' || c === 'P') {
      // \p{...}: one character.
      const close = this.s.indexOf('}', this.i);
      if (this.s[this.i] !== '{' || close < 0) throw new Unsupported();
      this.i = close + 1;
    }
    // \d \w \s, control and hex escapes, escaped punctuation: one character (their
    // trailing hex digits, if any, parse as literals after it: an overestimate).
    return ONE;
  }

  group(): Node {
    this.i++;
    let kind: 'plain' | 'ahead' | 'behind' = 'plain';
    if (this.s[this.i] === '?') {
      const next = this.s.slice(this.i, this.i + 3);
      if (next.startsWith('?:')) this.i += 2;
      else if (next.startsWith('?=') || next.startsWith('?!')) [kind, this.i] = ['ahead', this.i + 2];
      else if (next === '?<=' || next === '?<!') [kind, this.i] = ['behind', this.i + 3];
      else if (next.startsWith('?<')) {
        const close = this.s.indexOf('>', this.i);
        if (close < 0) throw new Unsupported();
        this.i = close + 1;
      } else throw new Unsupported();
    }
    const inner = this.alternation();
    if (this.s[this.i] !== ')') throw new Unsupported();
    this.i++;
    if (kind === 'plain') return inner;
    if (kind === 'ahead') return { max: 0, ahead: inner.ahead, behind: inner.behind };
    // A lookbehind reads what precedes its position, and whatever its own lookarounds reach.
    return { max: 0, ahead: inner.ahead, behind: inner.max + inner.behind };
  }
}
