// What an approval record (talon_approvals) means now: one reading for the
// gateway, the CLI and the orchestrator, so a PENDING record past its deadline is
// "expired" everywhere, whether or not the expiry has been written back yet.
import { ApprovalStatus, type Approval } from '@talon/proto';

export type ApprovalState = 'pending' | 'approved' | 'denied' | 'expired' | 'unknown';

export function approvalState(a: Pick<Approval, 'status' | 'expiresAtMs'>, now: number = Date.now()): ApprovalState {
  switch (a.status) {
    case ApprovalStatus.APPROVAL_STATUS_PENDING:
      return a.expiresAtMs > 0 && a.expiresAtMs <= now ? 'expired' : 'pending';
    case ApprovalStatus.APPROVAL_STATUS_APPROVED:
      return 'approved';
    case ApprovalStatus.APPROVAL_STATUS_DENIED:
      return 'denied';
    case ApprovalStatus.APPROVAL_STATUS_EXPIRED:
      return 'expired';
    default:
      return 'unknown';
  }
}
