import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  hashToken,
  isSecretName,
  isTokenValue,
  newTokenValue,
  parseSkillPrincipal,
  parseSkillRef,
  PLACEHOLDER_PATTERN,
  secretPlaceholder,
  skillPrincipal,
} from './contracts.ts';

describe('wire contracts', () => {
  it('secret names are exactly what a placeholder can carry', () => {
    for (const ok of ['llm_api_key', 'a', 'x'.repeat(64)]) {
      assert.ok(isSecretName(ok), ok);
      assert.deepEqual(
        [...secretPlaceholder(ok).matchAll(PLACEHOLDER_PATTERN)].map((m) => m[1]),
        [ok],
      );
    }
    for (const bad of ['', 'UPPER', 'a.b', 'a-b', 'x'.repeat(65)]) {
      assert.ok(!isSecretName(bad), bad);
      assert.throws(() => secretPlaceholder(bad));
    }
  });

  it('skill principals round-trip and refuse what no skill can be', () => {
    assert.equal(skillPrincipal('weather', '1.2.0'), 'skill:weather@1.2.0');
    assert.deepEqual(parseSkillPrincipal('skill:weather@1.2.0-rc.1'), { name: 'weather', version: '1.2.0-rc.1' });
    for (const bad of ['skill:weather', 'skill:@1', 'weather@1.0.0', 'skill:Weather@1.0.0', 'skill:w@1.0.0+b', 'skill:w@1'])
      assert.equal(parseSkillPrincipal(bad), undefined, bad);
    assert.deepEqual(parseSkillRef('http-probe@1.0.0'), { name: 'http-probe', version: '1.0.0' });
  });

  it('tokens have one shape and one hash', () => {
    const t = newTokenValue();
    assert.ok(isTokenValue(t));
    assert.ok(!isTokenValue(t.toUpperCase()));
    assert.equal(hashToken('x'), '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881');
  });
});
