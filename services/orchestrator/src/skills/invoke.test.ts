import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SKILL_HOST_WAIT_MS } from '@talon/kit/contracts';
import { attemptBudget, describeSkillError, REPLY_SLACK_MS } from './invoke.ts';

describe('skill invocation', () => {
  it('waits for the skill timeout, its wait for a host and slack, within the turn, and tells the sandbox to stop first', () => {
    const a = attemptBudget({ timeoutMs: 1000, deadline: 100_000 }, 0);
    assert.equal(a.waitMs, 1000 + SKILL_HOST_WAIT_MS + REPLY_SLACK_MS);
    assert.ok(a.deadlineMs < a.waitMs, 'the sandbox stops before the caller gives up, so its timeout answer arrives');
    const b = attemptBudget({ timeoutMs: 30_000, deadline: 5_000 }, 1_000);
    assert.equal(b.waitMs, 4_000, 'never past the turn deadline');
    assert.ok(b.deadlineMs > 1_000 && b.deadlineMs < 5_000);
  });

  it('explains failures to the model by code, with the sandbox message cut', () => {
    assert.equal(
      describeSkillError('weather', '1.0.0', 'not_approved', 'skill weather@1.0.0 was revoked'),
      'skill weather@1.0.0 is no longer approved by the operator (not_approved): skill weather@1.0.0 was revoked',
    );
    assert.match(describeSkillError('w', '1.0.0', 'busy', ''), /sandbox is busy; try again later \(busy\)$/);
    assert.match(describeSkillError('w', '1.0.0', 'weird_new_code', 'x'), /^skill w@1\.0\.0 failed \(weird_new_code\): x$/);
    assert.ok(describeSkillError('w', '1.0.0', 'plugin_error', 'y'.repeat(5000)).length < 500);
  });
});
