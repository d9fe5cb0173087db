import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApprovalStatus } from '@talon/proto';
import { approvalState } from './approvals.ts';

describe('approvalState', () => {
  const base = { status: ApprovalStatus.APPROVAL_STATUS_PENDING, expiresAtMs: 2000 };

  it('a pending approval past its deadline reads as expired', () => {
    assert.equal(approvalState(base, 1000), 'pending');
    assert.equal(approvalState(base, 2000), 'expired');
    assert.equal(approvalState({ ...base, expiresAtMs: 0 }, 9e12), 'pending');
  });

  it('decided and unknown records read as their status', () => {
    assert.equal(approvalState({ ...base, status: ApprovalStatus.APPROVAL_STATUS_APPROVED }, 9e12), 'approved');
    assert.equal(approvalState({ ...base, status: ApprovalStatus.APPROVAL_STATUS_DENIED }, 0), 'denied');
    assert.equal(approvalState({ ...base, status: ApprovalStatus.APPROVAL_STATUS_EXPIRED }, 0), 'expired');
    assert.equal(approvalState({ ...base, status: ApprovalStatus.APPROVAL_STATUS_UNSPECIFIED }, 0), 'unknown');
  });
});
