import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { patternReach } from './reach.ts';
import { BUILTIN_RULES } from './rules.ts';
import { RULE_FIXTURES, rnd } from './rule-fixtures.ts';

describe('patternReach', () => {
  it('bounds literals, classes, quantifiers, alternatives and lookarounds', () => {
    assert.deepEqual(patternReach('abc'), { behind: 0, ahead: 3 });
    assert.deepEqual(patternReach('(?<![a-z])ab{2,5}(?![0-9])'), { behind: 1, ahead: 7 });
    assert.deepEqual(patternReach('x(?:ab|cdef)?[\\]x]{3}'), { behind: 0, ahead: 8 });
    assert.deepEqual(patternReach('\\bkey\\b'), { behind: 1, ahead: 4 });
    // An upper bound: what a lookbehind reads is counted ahead too.
    assert.deepEqual(patternReach('(?<=ab{1,3})c(?=d{2})'), { behind: 4, ahead: 4 });
    assert.deepEqual(patternReach('(?<name>a{2})\\{x'), { behind: 0, ahead: 4 });
    assert.deepEqual(patternReach('a{0}b??'), { behind: 0, ahead: 1 });
  });

  it('gives up on what it does not follow: the caller then matches the whole text', () => {
    for (const src of ['^a', 'a$', 'a+', 'a*', 'a{2,}', '(a)\\1', '(?<n>a)\\k<n>', '[abc', '(a', 'a)'])
      assert.equal(patternReach(src), null, src);
    assert.equal(patternReach('[a--b]', 'v'), null);
  });

  it('knows every built-in rule', () => {
    for (const rule of BUILTIN_RULES) assert.ok(patternReach(rule.pattern.source, rule.pattern.flags) !== null, rule.id);
  });

  it('matching a window of that reach gives what matching the whole text gives, at every literal of every rule', () => {
    let compared = 0;
    let matched = 0;
    for (const rule of BUILTIN_RULES) {
      const reach = patternReach(rule.pattern.source, rule.pattern.flags)!;
      const re = new RegExp(rule.pattern.source, rule.pattern.flags.replace(/[gy]/g, '') + 'y');
      const fx = RULE_FIXTURES[rule.id];
      const samples = [...(fx?.positives ?? []), ...(fx?.nearMisses ?? []), ...(fx?.worst ?? [])];
      for (const sample of samples)
        for (const [before, after] of [
          ['', ''],
          [rnd('abc_-', 3), rnd('xyz09', 3)],
          [`${rnd('ABCDEFabcdef0123', 40)} `, ` ${rnd('ABCDEFabcdef0123', 40)}`],
        ]) {
          const text = `${before}${sample}${after}`;
          const lits = (rule.literals ?? []).map((l) => (rule.pattern.flags.includes('i') ? l.toLowerCase() : l));
          const hay = rule.pattern.flags.includes('i') ? text.toLowerCase() : text;
          for (let at = 0; at < text.length; at++) {
            if (!lits.some((l) => hay.startsWith(l, at))) continue;
            re.lastIndex = at;
            const whole = re.exec(text)?.[0] ?? null;
            const from = Math.max(0, at - reach.behind);
            re.lastIndex = at - from;
            const window = re.exec(text.slice(from, Math.min(text.length, at + reach.ahead)))?.[0] ?? null;
            assert.equal(window, whole, `${rule.id} at ${at}`);
            compared++;
            if (whole !== null) matched++;
          }
        }
    }
    assert.ok(compared > 300 && matched > 100, `${compared} literal positions compared, ${matched} matches`);
  });
});
