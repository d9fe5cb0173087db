import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MissedRunPolicy } from '@talon/proto';
import { routineFromOptions, showInstant, type AddOptions } from './routines.ts';

const base: AddOptions = { cron: '0 8 * * 1-5', tz: 'Europe/Berlin', prompt: 'Plan my day', user: 'alice', deliver: 'web', missed: 'skip' };

describe('talon routines add: the record it writes', () => {
  it('builds an active routine from the options, its zone canonical', () => {
    const r = routineFromOptions('standup', { ...base, cron: ' 0 8 * * 1-5 ', missed: 'run-once' }, 1000, 'cli:op');
    assert.equal(r.cron, '0 8 * * 1-5');
    assert.equal(r.timeZone, 'Europe/Berlin');
    assert.equal(r.missed, MissedRunPolicy.MISSED_RUN_POLICY_RUN_ONCE);
    assert.equal(r.activeSinceMs, 1000, 'slots before it was added never run');
    assert.equal(r.paused, false);
  });

  it('refuses what the orchestrators could not run, saying which option is wrong', () => {
    assert.throws(
      () => routineFromOptions('x', { ...base, cron: '0 25 * * *' }, 0, ''),
      /invalid cron expression "0 25 \* \* \*": Invalid value for hour: 25/,
    );
    assert.throws(() => routineFromOptions('x', { ...base, tz: 'Europe/Atlantis' }, 0, ''), /unknown time zone "Europe\/Atlantis"/);
    assert.throws(() => routineFromOptions('x', { ...base, deliver: 'telegram:' }, 0, ''), /numeric Telegram chat id/);
    assert.throws(() => routineFromOptions('x', { ...base, missed: 'never' }, 0, ''), /--missed must be skip or run-once/);
    assert.throws(() => routineFromOptions('no.dots', base, 0, ''), /routine name "no.dots" must be/);
    assert.throws(() => routineFromOptions('x', { ...base, agent: 'Bad Agent' }, 0, ''), /--agent "Bad Agent" must be an agent's name/);
    assert.equal(routineFromOptions('x', { ...base, agent: 'research' }, 0, '').agent, 'research');
    assert.equal(routineFromOptions('x', base, 0, '').agent, undefined);
  });

  it('shows an instant in the routine’s zone and in UTC', () => {
    assert.equal(
      showInstant(Date.parse('2026-12-07T07:00:00Z'), 'Europe/Berlin'),
      '2026-12-07 08:00:00 Europe/Berlin (2026-12-07T07:00:00Z)',
    );
  });
});
