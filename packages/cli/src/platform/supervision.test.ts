import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_RESTART_DELAY_MS, STABLE_RUN_MS, nextRestart } from './supervision.ts';

describe('restart backoff', () => {
  it('doubles while a process keeps crashing, up to the cap', () => {
    let attempts = 0;
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = nextRestart(attempts, 200);
      attempts = r.attempt;
      delays.push(r.delayMs);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, MAX_RESTART_DELAY_MS, MAX_RESTART_DELAY_MS, MAX_RESTART_DELAY_MS]);
  });

  it('starts over after a healthy run', () => {
    assert.deepEqual(nextRestart(7, STABLE_RUN_MS), { attempt: 1, delayMs: 1000 });
    assert.deepEqual(nextRestart(7, STABLE_RUN_MS - 1), { attempt: 8, delayMs: MAX_RESTART_DELAY_MS });
  });
});
