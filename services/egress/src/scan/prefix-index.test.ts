import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Prefix4Index, key4, key4OfLatin1 } from './prefix-index.ts';

/** Every offset whose 4 bytes equal one of the keys, by brute force. */
function naive(data: Uint8Array, keys: Set<number>, from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i + 4 <= to; i++) if (keys.has(key4(data, i))) out.push(i);
  return out;
}

describe('Prefix4Index', () => {
  it('key4 of bytes and of a latin1 string agree', () => {
    assert.equal(key4(Buffer.from('ghp_', 'latin1'), 0), key4OfLatin1('ghp_xyz'));
    assert.throws(() => key4OfLatin1('abc'), RangeError);
  });

  it('finds exactly the offsets a brute-force search finds, at every alignment and sub-range', () => {
    // A small alphabet makes keys recur often, including overlapping and at the edges.
    const alphabet = Buffer.from('abcd');
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % 1_000_000;
    const keyStrings = ['abca', 'dddd', 'bcab', 'cdab', 'aaaa'];
    const keys = new Set(keyStrings.map((k) => key4OfLatin1(k)));
    const index = new Prefix4Index(keyStrings.map((k, i) => [key4OfLatin1(k), i] as const));
    const backing = Buffer.alloc(20_011);
    for (let i = 0; i < backing.length; i++) backing[i] = alphabet[rnd() % 4]!;
    for (const offset of [0, 1, 2, 3, 5]) {
      const data = backing.subarray(offset); // exercises unaligned byteOffsets
      for (const [from, to] of [
        [0, data.length],
        [1, data.length - 1],
        [3, 17],
        [0, 3],
        [2, 9],
        [4093, 12_345],
      ] as const) {
        const got: number[] = [];
        index.scan(
          data,
          (at, values) => {
            assert.ok(values.length > 0);
            got.push(at);
          },
          from,
          to,
        );
        assert.deepEqual(got, naive(data, keys, from, to), `offset ${offset}, range ${from}..${to}`);
      }
    }
  });

  it('finds every key along runs of one repeated word, which it crosses without testing each window', () => {
    // Runs of a repeated 1-, 2- or 4-byte pattern (padding, a repeated letter, a key written over and
    // over), some of them keys or holding keys, between random bytes, at every alignment and length.
    const keyStrings = ['aaaa', 'abab', 'ghp_', '\0\0\0\0', 'xyzx'];
    const keys = new Set(keyStrings.map((k) => key4OfLatin1(k)));
    const index = new Prefix4Index(keyStrings.map((k, i) => [key4OfLatin1(k), i] as const));
    let seed = 11;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const units = ['a', 'ab', 'ghp_', '\0', 'b', 'xyzx', 'q', 'ba'];
    for (let trial = 0; trial < 300; trial++) {
      const parts: Buffer[] = [];
      for (let i = rnd(8); i >= 0; i--) {
        parts.push(Buffer.from(Array.from({ length: rnd(40) }, () => rnd(256))));
        parts.push(Buffer.from(units[rnd(units.length)]!.repeat(1 + rnd(900)), 'latin1'));
      }
      const data = Buffer.concat(parts).subarray(rnd(4));
      const got: number[] = [];
      index.scan(data, (at) => {
        got.push(at);
      });
      assert.deepEqual(got, naive(data, keys, 0, data.length), `trial ${trial}`);
    }
  });

  it('reports every value registered under a key and stops when asked', () => {
    const index = new Prefix4Index([
      [key4OfLatin1('key-'), 'a'],
      [key4OfLatin1('key-'), 'b'],
    ]);
    const text = Buffer.from('x key- y key- z key-');
    const seen: string[] = [];
    index.scan(text, (at, values) => {
      seen.push(`${at}:${values.join('')}`);
      return seen.length === 2;
    });
    assert.deepEqual(seen, ['2:ab', '9:ab']);
    assert.deepEqual(index.get(key4OfLatin1('key-')), ['a', 'b']);
    assert.equal(index.get(key4OfLatin1('nope')), undefined);
  });

  it('handles many keys with colliding hashes (open addressing)', () => {
    const entries: Array<[number, number]> = [];
    for (let i = 0; i < 5000; i++) entries.push([(i * 2654435761) | 0, i]);
    const index = new Prefix4Index(entries);
    assert.equal(index.size, 5000);
    for (const [k, v] of entries) assert.deepEqual(index.get(k), [v]);
  });
});
