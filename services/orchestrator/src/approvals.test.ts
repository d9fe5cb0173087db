import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApprovalKind, ApprovalStatus } from '@talon/proto';
import { approvalIdFor, buildApproval, decisionOf, isSettled, isWrongSequence, type ApprovalSubject } from './approvals.ts';

const subject: ApprovalSubject = {
  inboundId: '4f5c1e9e-6a0b-4c2e-9a57-2a1b3c4d5e6f',
  callIndex: 2,
  conversation: { userId: 'alice', channel: 'api', threadId: 't1' },
  tool: 'skill_weather',
  skill: 'weather',
  version: '1.0.0',
  argumentsJson: '{"city":"Oslo"}',
};

describe('tool-call approvals', () => {
  it('derives a stable id from the turn, the call position and exactly what would run', () => {
    const id = approvalIdFor(subject);
    assert.match(id, /^tc-[0-9a-f]{40}$/);
    assert.equal(approvalIdFor({ ...subject }), id, 'a redelivered turn finds the same approval');
    for (const change of [
      { inboundId: 'other' },
      { callIndex: 3 },
      { tool: 'skill_other' },
      { skill: 'other' },
      { version: '1.0.1' },
      { argumentsJson: '{"city":"Bergen"}' },
    ]) {
      assert.notEqual(approvalIdFor({ ...subject, ...change }), id, JSON.stringify(change));
    }
  });

  it('builds a PENDING tool-call record the gateway can show and the user can decide', () => {
    const a = buildApproval({ ...subject, argumentsJson: JSON.stringify({ city: 'x'.repeat(400) }) }, 1000, 60_000);
    assert.equal(a.kind, ApprovalKind.APPROVAL_KIND_TOOL_CALL);
    assert.equal(a.status, ApprovalStatus.APPROVAL_STATUS_PENDING);
    assert.equal(a.userId, 'alice');
    assert.equal(a.requestedBy, 'orchestrator');
    assert.equal(a.inboundId, subject.inboundId);
    assert.equal(a.expiresAtMs, 61_000);
    assert.equal(a.operatorOnly, false);
    assert.ok(a.summary.length <= 200);
    assert.match(a.summary, /^weather 1\.0\.0: \{"city":"xxx/);
  });

  it('reads decisions, treats an overdue pending record as expired, and refuses records for another call', () => {
    const a = buildApproval(subject, 1000, 60_000);
    assert.equal(decisionOf(a, subject, 2000), 'pending');
    assert.equal(decisionOf(a, subject, 61_000), 'expired');
    assert.equal(isSettled(a, 2000), false);
    assert.equal(isSettled(a, 61_000), true);
    assert.equal(decisionOf({ ...a, status: ApprovalStatus.APPROVAL_STATUS_APPROVED }, subject, 99_999), 'approved');
    assert.equal(decisionOf({ ...a, status: ApprovalStatus.APPROVAL_STATUS_DENIED }, subject, 2000), 'denied');
    assert.equal(decisionOf({ ...a, status: ApprovalStatus.APPROVAL_STATUS_EXPIRED }, subject, 2000), 'expired');
    const approved = { ...a, status: ApprovalStatus.APPROVAL_STATUS_APPROVED };
    // An approval edited to cover other arguments, user or kind never authorises this call.
    assert.equal(decisionOf({ ...approved, argumentsJson: '{"city":"Bergen"}' }, subject, 2000), 'mismatch');
    assert.equal(decisionOf({ ...approved, userId: 'mallory' }, subject, 2000), 'mismatch');
    assert.equal(decisionOf({ ...approved, kind: ApprovalKind.APPROVAL_KIND_SKILL }, subject, 2000), 'mismatch');
    assert.equal(decisionOf(approved, { ...subject, argumentsJson: '{"city":"Bergen"}' }, 2000), 'mismatch');
  });

  it('recognises a lost compare-and-set', () => {
    assert.equal(isWrongSequence(Object.assign(new Error('wrong last sequence: 4'), { name: 'JetStreamApiError', code: 10071 })), true);
    assert.equal(isWrongSequence(new Error('timeout')), false);
  });
});
