import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, deliveryKey, failureText } from './delivery.ts';

describe('delivery helpers', () => {
  it('backs off exponentially with jitter, capped, never below Retry-After', () => {
    const lo = () => 0;
    const hi = () => 0.999999;
    assert.equal(backoffDelay(1, 1000, 60_000, undefined, lo), 500);
    assert.equal(backoffDelay(1, 1000, 60_000, undefined, hi), 1000);
    assert.equal(backoffDelay(4, 1000, 60_000, undefined, hi), 8000);
    assert.equal(backoffDelay(30, 1000, 60_000, undefined, hi), 60_000);
    assert.equal(backoffDelay(1, 1000, 60_000, 5000, lo), 5000, 'a platform’s Retry-After wins');
    assert.equal(backoffDelay(1, 1000, 60_000, 600_000, lo), 60_000, 'but never past the cap');
    assert.ok(backoffDelay(2000, 1000, 60_000, undefined) <= 60_000);
  });

  it('keys delivery records by a hash of the inbound id and shows users codes only', () => {
    assert.match(deliveryKey('telegram-abc'), /^delivery\.[0-9a-f]{40}$/);
    assert.equal(deliveryKey('x'), deliveryKey('x'));
    assert.match(failureText('llm_error'), /\(llm_error\)/);
  });
});
