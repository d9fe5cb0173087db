import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TalonError } from '@talon/kit/errors';
import {
  conversationTitle,
  decodeConversationCursor,
  decodeMessagesCursor,
  encodeConversationCursor,
  pageLimit,
  survivesErasure,
  TITLE_CHARS,
} from './conversations.ts';

const invalid = (e: unknown) => e instanceof TalonError && e.code === 'invalid_argument';

describe('conversation listing helpers', () => {
  it('round-trips page cursors and refuses anything else', () => {
    const c = { at: '2026-12-05T10:11:12.123456Z', id: '0b7c4c1e-8d3a-4f5e-9a1b-2c3d4e5f6a7b' };
    const s = encodeConversationCursor(c);
    assert.match(s, /^[A-Za-z0-9_-]+$/, 'URL-safe');
    assert.deepEqual(decodeConversationCursor(s), c);
    assert.equal(decodeConversationCursor(''), undefined);
    for (const bad of [
      'x',
      '2026-12-05T10:11:12.123456Z|0b7c4c1e-8d3a-4f5e-9a1b-2c3d4e5f6a7b',
      Buffer.from(`${c.at}|${c.id}|extra`).toString('base64url'),
      Buffer.from(`2026-12-05 10:11:12|${c.id}`).toString('base64url'),
      Buffer.from(`${c.at}|' or 1=1 --`).toString('base64url'),
      'A'.repeat(500),
    ])
      assert.throws(() => decodeConversationCursor(bad), invalid, bad);
    assert.equal(decodeMessagesCursor(''), undefined);
    assert.equal(decodeMessagesCursor('12345'), '12345');
    for (const bad of ['0', '-1', '1.5', '01', '1 or 1=1', '9'.repeat(20)]) assert.throws(() => decodeMessagesCursor(bad), invalid, bad);
  });

  it('titles a conversation by its first user message on one line', () => {
    assert.equal(conversationTitle('  Hello\n\n  there\tfriend '), 'Hello there friend');
    assert.equal(conversationTitle(null), '');
    const long = conversationTitle(`${'word '.repeat(40)}`);
    assert.equal(Array.from(long).length, TITLE_CHARS);
    assert.ok(long.endsWith('…'));
    // Cut by characters, never inside a surrogate pair.
    const emoji = conversationTitle('🚤'.repeat(100));
    assert.equal(Array.from(emoji).length, TITLE_CHARS);
    assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])/.test(emoji));
  });

  it('brings limits into range', () => {
    assert.equal(pageLimit(0, 50, 200), 50);
    assert.equal(pageLimit(-3, 50, 200), 50);
    assert.equal(pageLimit(Number.NaN, 50, 200), 50);
    assert.equal(pageLimit(7.9, 50, 200), 7);
    assert.equal(pageLimit(4294967295, 50, 200), 200);
  });

  it('keeps out turns created at or before an erasure', () => {
    assert.equal(survivesErasure(1000, undefined), true);
    assert.equal(survivesErasure(1000, 1000.5), false);
    assert.equal(survivesErasure(1001, 1000.5), true);
    assert.equal(survivesErasure(0, 1000), true, 'no creation time: created now, after the erasure');
  });
});
