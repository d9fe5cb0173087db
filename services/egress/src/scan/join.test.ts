import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RULE_KEY, SECRET_KEY, joinedWindows, jsonStringValues, looksLikeJson, paramValues, type KeyHits, type KeyKinds } from './join.ts';

const key = (s: string) => s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24);

/** Key lookups for the literal `ghp_` (a rule) and the prefix `SeCr` (a secret). */
function kindsFor(rules: string[], secrets: string[]): KeyKinds {
  const map = new Map<number, number>();
  for (const r of rules) map.set(key(r), (map.get(key(r)) ?? 0) | RULE_KEY);
  for (const s of secrets) map.set(key(s), (map.get(key(s)) ?? 0) | SECRET_KEY);
  // A filter that lets every key through: kinds() decides.
  return { filter: { slots: new Uint8Array(2).fill(1), shift: 31 }, kinds: (k) => map.get(k | 0) ?? 0 };
}

/** Positions of the keys in `src`, as a layer's own scan records them. */
function hitsIn(src: Buffer, kinds: KeyKinds): KeyHits {
  const hits: KeyHits = { rules: [], secrets: [] };
  for (let i = 0; i + 4 <= src.length; i++) {
    const k = kinds.kinds(src.readInt32LE(i));
    if (k & RULE_KEY) hits.rules.push(i);
    if (k & SECRET_KEY) hits.secrets.push(i);
  }
  return hits;
}

const OPTS = { secretReach: 24, ruleReach: 64, context: 8 };
const KINDS = kindsFor(['ghp_'], ['SeCr']);

function join(json: string, opts = OPTS) {
  const src = Buffer.from(json);
  const j = joinedWindows(src, jsonStringValues(src).spans, hitsIn(src, KINDS), KINDS, opts);
  const str = (b: Buffer | null | 'limit') => (b === null || b === 'limit' ? b : b.toString().split('\n'));
  return { secrets: str(j.secrets), rules: str(j.rules) };
}

describe('jsonStringValues', () => {
  const values = (json: string) => {
    const src = Buffer.from(json);
    const { spans, nested } = jsonStringValues(src);
    const cut = (xs: number[]) => xs.flatMap((x, k) => (k % 2 ? [] : [src.toString('utf8', x, xs[k + 1])]));
    return { values: cut(spans), nested: cut(nested) };
  };

  it('lists string values in order, raw, leaving out keys and other scalars', () => {
    assert.deepEqual(values('{"a": "x", "b" : ["y", 1, true, "z\\"q"], "c":{"d":"w\\\\"}, "e": null}').values, [
      'x',
      'y',
      'z\\"q',
      'w\\\\',
    ]);
    assert.deepEqual(values('[\n  "one",\n  "two"\n]').values, ['one', 'two']);
  });

  it('marks values that are JSON themselves', () => {
    const doc = JSON.stringify({ tool: 'x', arguments: JSON.stringify({ a: 1 }), text: '{not json' });
    assert.deepEqual(values(doc).nested, ['{\\"a\\":1}']);
  });

  it('tolerates malformed and truncated JSON', () => {
    assert.deepEqual(values('{"a":"b","c":"unterminated').values, ['b']);
    assert.deepEqual(values('').values, []);
  });

  it('looksLikeJson wants an object or an array', () => {
    for (const t of ['{"a":1}', '  [\n"x"]', '[{"a":1}]', '[]', '[1, "a"]', '[-1]', '[true]'])
      assert.equal(looksLikeJson(Buffer.from(t)), true, t);
    for (const t of ['plain', '[link](x)', '"str"', '']) assert.equal(looksLikeJson(Buffer.from(t)), false, t);
  });
});

describe('paramValues', () => {
  const vals = (s: string, url: boolean) => {
    const src = Buffer.from(s);
    return paramValues(src, url).flatMap((x, k, xs) => (k % 2 ? [] : [src.toString('latin1', x, xs[k + 1])]));
  };

  it('lists query values after the first ? up to a #, and form values, in order', () => {
    assert.deepEqual(vals('https://h.example/p?a=1&b=%41B;c=x=y&flag&d=#frag&e=2', true), ['1', '%41B', 'x=y', 'flag']);
    assert.deepEqual(vals('https://h.example/path-only', true), []);
    assert.deepEqual(vals('user=me&pw=a+b', false), ['me', 'a+b']);
  });
});

describe('joinedWindows', () => {
  it('yields nothing for a document whose values hold no literal or prefix near a junction', () => {
    assert.deepEqual(join(JSON.stringify({ a: 'hello', b: 'world', c: 'ghp_' + 'x'.repeat(200) + ' far from the end' })), {
      secrets: null,
      rules: null,
    });
  });

  it('joins a rule literal across the following values, one window per value end', () => {
    const r = join(JSON.stringify({ m: 'gpt', a: 'ghp_ab', b: 'cd', c: 'ef', d: 'with space' })).rules;
    assert.deepEqual(r, ['ghp_abcd', 'ghp_abcdef']);
  });

  it('finds a literal split inside its first four bytes', () => {
    assert.deepEqual(join(JSON.stringify(['xx', 'gh', 'p_abcd', 'ef'])).rules, ['ghp_abcd', 'ghp_abcdef']);
    // Windows shorter than 8 bytes are left out: no credential is that short.
    assert.deepEqual(join(JSON.stringify(['g', 'h', 'p', '_', 'abcd', 'ef'])).rules, ['ghp_abcd', 'ghp_abcdef']);
  });

  it('keeps the literal own value before it as context, never another value', () => {
    assert.deepEqual(join(JSON.stringify(['zzzz', 'key=ghp_ab', 'cdef'])).rules, ['key=ghp_abcdef']);
  });

  it('does not join prose or whitespace into a token', () => {
    assert.equal(join(JSON.stringify(['ghp_ab', 'line one\nline two'])).rules, null);
    assert.equal(join(JSON.stringify(['ghp_ab cd', 'ef'])).rules, null);
  });

  it('stops at the next value holding a literal (a list of tokens costs one window each)', () => {
    assert.deepEqual(join(JSON.stringify(['ghp_aaaa', 'ghp_bbbb', 'ghp_cccc'])).rules, null);
    const many = JSON.stringify(Array.from({ length: 5000 }, (_, i) => `ghp_${i}`));
    assert.equal(join(many).rules, null);
  });

  it('gives secrets a window of their reach from each prefix near a junction, merged', () => {
    assert.deepEqual(join(JSON.stringify(['aSeCr', 'et-12', 'xy', 'with space'])).secrets, ['SeCret-12xywith space']);
  });

  it('reports its limit rather than emitting windows without bound', () => {
    const opts = { secretReach: 0, ruleReach: 4096, context: 8 };
    const adversarial = JSON.stringify(Array.from({ length: 3000 }, (_, i) => (i % 60 === 0 ? 'xghp_' : 'a'.repeat(60))));
    assert.equal(join(adversarial, opts).rules, 'limit');
  });
});
