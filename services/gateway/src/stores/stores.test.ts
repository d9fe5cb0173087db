import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Approval, ApprovalKind, ApprovalStatus } from '@talon/proto';
import type { Principal } from '../auth.ts';
import { approvalView, mayDecide } from './approvals.ts';
import { CODE, displayCode, newPairingCode, normalizeCode } from './pairing.ts';

describe('pairing codes', () => {
  it('are 8 symbols of an unambiguous alphabet, typed any way', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const c = newPairingCode();
      assert.match(c, CODE);
      assert.doesNotMatch(c, /[01OIL]/);
      seen.add(c);
    }
    assert.ok(seen.size > 1990, 'codes do not repeat in practice');
    assert.equal(normalizeCode('abcd-ef23'), 'ABCDEF23');
    assert.equal(normalizeCode(' ABCD EF23 '), 'ABCDEF23');
    assert.equal(normalizeCode('ABCD-EF2O'), undefined);
    assert.equal(normalizeCode('ABC'), undefined);
    assert.equal(displayCode('ABCDEF23'), 'ABCD-EF23');
  });
});

describe('approvals', () => {
  const base: Approval = {
    ...Approval.fromPartial({}),
    id: 'a1',
    kind: ApprovalKind.APPROVAL_KIND_TOOL_CALL,
    userId: 'ann',
    status: ApprovalStatus.APPROVAL_STATUS_PENDING,
    expiresAtMs: 2000,
  };
  const user = (id: string): Principal => ({ userId: id, tokenId: 't', tokenName: 'n', scope: 'user', tokenHash: 'h' });
  const op: Principal = { ...user('root'), scope: 'operator' };

  it('a pending approval past its deadline reads as expired (approvalState in the kit)', () => {
    assert.equal(approvalView(base, 1000).status, 'pending');
    assert.equal(approvalView(base, 2000).status, 'expired');
    assert.equal(approvalView({ ...base, expiresAtMs: 0 }, 9e12).status, 'pending');
    assert.equal(approvalView(base, 1000).kind, 'tool_call');
  });

  it('users decide their own tool calls; skills and operator-only ones need an operator', () => {
    assert.ok(mayDecide(user('ann'), base));
    assert.ok(!mayDecide(user('bob'), base));
    assert.ok(!mayDecide(user('ann'), { ...base, kind: ApprovalKind.APPROVAL_KIND_SKILL }));
    assert.ok(!mayDecide(user('ann'), { ...base, operatorOnly: true }));
    assert.ok(mayDecide(op, { ...base, kind: ApprovalKind.APPROVAL_KIND_SKILL }));
  });
});
