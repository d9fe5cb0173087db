import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { contentWords, foldSuffix, HashedLexicalEmbedder, HASHED_LEXICAL_MODEL } from './hashed-lexical.ts';
import { dot } from './types.ts';

const norm = (v: Float32Array) => Math.sqrt(dot(v, v));

describe('hashed-lexical-v1', () => {
  const e = new HashedLexicalEmbedder(384);

  it('names itself honestly and has the configured dimension', async () => {
    assert.equal(e.model, HASHED_LEXICAL_MODEL);
    assert.equal(e.local, true);
    const [v] = await e.embed(['hello world']);
    assert.equal(v!.length, 384);
    assert.equal(new HashedLexicalEmbedder(64).embedOne('hello world').length, 64);
  });

  it('is deterministic and L2-normalised', () => {
    const a = e.embedOne('The quick brown fox jumps over the lazy dog');
    const b = e.embedOne('The quick brown fox jumps over the lazy dog');
    assert.deepEqual(a, b);
    assert.ok(Math.abs(norm(a) - 1) < 1e-5);
  });

  it('gives related wording a higher similarity than unrelated text', () => {
    const q = e.embedOne('what is the name of my cat?');
    const rel = e.embedOne('My cat is named Pixel and she sleeps on the sofa.');
    const unrel = e.embedOne('Quarterly revenue grew by twelve percent in Europe.');
    assert.ok(dot(q, rel) > dot(q, unrel) + 0.1, `${dot(q, rel)} vs ${dot(q, unrel)}`);
  });

  it('tolerates inflections and typos through suffix folding and character trigrams', () => {
    const base = e.embedOne('running marathons');
    assert.ok(dot(base, e.embedOne('she runs a marathon')) > dot(base, e.embedOne('baking bread')));
    assert.ok(dot(e.embedOne('restaurant'), e.embedOne('restuarant')) > dot(e.embedOne('restaurant'), e.embedOne('bicycle')) + 0.15);
    assert.equal(foldSuffix('running'), 'runn');
    assert.equal(foldSuffix('marathons'), 'marathon');
    assert.equal(foldSuffix('class'), 'class');
  });

  it('handles scripts without spaces, emoji and empty text', () => {
    const zh = e.embedOne('我的猫叫小白');
    assert.ok(Math.abs(norm(zh) - 1) < 1e-5);
    assert.ok(dot(zh, e.embedOne('小白是我的猫')) > 0.2);
    assert.ok(Number.isFinite(norm(e.embedOne('🐈‍⬛ 🙂 \u202e'))));
    assert.equal(norm(e.embedOne('')), 0);
    assert.deepEqual(contentWords('The cats and THE dogs'), ['cat', 'dog']);
  });

  it('refuses absurd dimensions', () => {
    assert.throws(() => new HashedLexicalEmbedder(3), RangeError);
  });
});
