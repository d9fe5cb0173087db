import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chunkText } from './chunk.ts';

describe('chunkText', () => {
  it('keeps short text whole and drops blank text', () => {
    assert.deepEqual(chunkText('  hello world  ', { size: 100, overlap: 10 }), ['hello world']);
    assert.deepEqual(chunkText(' \n\t ', { size: 100, overlap: 10 }), []);
  });

  it('covers all text, within the size, with overlap between neighbours', () => {
    const words = Array.from({ length: 600 }, (_, i) => `w${i}`);
    const text = words.join(' ');
    const chunks = chunkText(text, { size: 200, overlap: 40 });
    assert.ok(chunks.length > 10);
    for (const c of chunks) assert.ok(c.length <= 200, `chunk of ${c.length}`);
    // Every word appears in some chunk, whole.
    const seen = new Set(chunks.flatMap((c) => c.split(/\s+/)));
    for (const w of words) assert.ok(seen.has(w), `${w} lost`);
    // Neighbours share text.
    for (let i = 1; i < chunks.length; i++) {
      const tail = chunks[i - 1]!.split(' ').at(-1)!;
      assert.ok(chunks[i]!.includes(tail), `chunk ${i} does not repeat ${tail}`);
    }
  });

  it('prefers paragraph and sentence boundaries', () => {
    const para = 'First paragraph sentence one. Sentence two is here.';
    const text = `${para}\n\n${'Second paragraph. '.repeat(6)}`;
    const chunks = chunkText(text, { size: 80, overlap: 0 });
    assert.equal(chunks[0], para);
  });

  it('hard-cuts text without spaces but never splits a surrogate pair', () => {
    const text = '😀'.repeat(300);
    const chunks = chunkText(text, { size: 101, overlap: 11 });
    for (const c of chunks) assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(c), 'lone surrogate');
    assert.ok(chunks.join('').length >= text.length);
  });

  it('terminates on pathological options', () => {
    assert.ok(chunkText('x'.repeat(50), { size: 1, overlap: 5 }).length === 50);
  });
});
