import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bearerToken, hashToken, TOKEN_PATTERN } from './auth.ts';

describe('token helpers', () => {
  it('extracts bearer tokens only from a well-formed header', () => {
    assert.equal(bearerToken('Bearer abc'), 'abc');
    assert.equal(bearerToken('bearer   abc  '), 'abc');
    assert.equal(bearerToken('Basic abc'), undefined);
    assert.equal(bearerToken('Bearer a b'), undefined);
    assert.equal(bearerToken(undefined), undefined);
  });

  it('hashes with SHA-256 and knows the token shape', () => {
    assert.equal(hashToken('x'), '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881');
    assert.ok(TOKEN_PATTERN.test(`talon_pat_${'0f'.repeat(32)}`));
    assert.ok(!TOKEN_PATTERN.test(`talon_pat_${'0F'.repeat(32)}`));
    assert.ok(!TOKEN_PATTERN.test('talon_pat_short'));
  });
});
