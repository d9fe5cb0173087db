import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from './ratelimit.ts';

describe('RateLimiter', () => {
  it('allows a burst of perMinute, then refills over time', () => {
    let now = 0;
    const rl = new RateLimiter({ perMinute: 6 }, { now: () => now });
    for (let i = 0; i < 6; i++) assert.ok(rl.take('a'));
    assert.ok(!rl.take('a'));
    assert.ok(rl.take('b'), 'keys are independent');
    assert.equal(rl.retryAfterS('a'), 10);
    now += 10_000;
    assert.ok(rl.take('a'));
    assert.ok(!rl.take('a'));
  });

  it('has() does not consume; memory stays bounded', () => {
    const rl = new RateLimiter({ perMinute: 1 }, { maxKeys: 3 });
    assert.ok(rl.has('x'));
    assert.ok(rl.take('x'));
    assert.ok(!rl.has('x'));
    for (const k of ['a', 'b', 'c', 'd']) rl.take(k);
    assert.equal(rl.size, 3);
  });
});
