import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MissedRunPolicy, RoutineRunState, type Routine } from '@talon/proto';
import { newRun } from '@talon/records/routines';
import { routineJson } from './routines.ts';

const routine: Routine = {
  name: 'standup',
  cron: '0 8 * * 1-5',
  timeZone: 'Europe/Berlin',
  prompt: 'Plan my day',
  userId: 'alice',
  deliver: 'telegram:42',
  missed: MissedRunPolicy.MISSED_RUN_POLICY_RUN_ONCE,
  paused: false,
  createdAtMs: 0,
  updatedAtMs: 0,
  activeSinceMs: 0,
  createdBy: 'cli:op',
  trigger: '',
  heartbeat: false,
  checklist: '',
};

describe('GET /v1/routines: a routine as the web UI sees it', () => {
  it('shows the next run, where the answers go and the runs with their outcome', () => {
    const run = { ...newRun('standup', 1000), state: RoutineRunState.ROUTINE_RUN_STATE_FAILED, error: 'llm_unavailable' };
    const j = routineJson(routine, [run], Date.parse('2026-12-04T12:00:00Z'));
    assert.equal(j.nextRunAtMs, Date.parse('2026-12-07T07:00:00Z'));
    assert.deepEqual(j.conversation, { id: 'chat:42', channel: 'telegram' });
    assert.equal(j.missed, 'run-once');
    assert.deepEqual(
      j.runs.map((r) => [r.scheduledAtMs, r.state, r.error]),
      [[1000, 'failed', 'llm_unavailable']],
    );
  });

  it('shows no next run for a paused routine', () => {
    assert.equal(routineJson({ ...routine, paused: true }, [], 0).nextRunAtMs, null);
  });
});
