// Approvals (talon_approvals): requesters create PENDING records; the user who
// owns the conversation (tool calls) or an operator decides them here, by
// compare-and-set on the record's revision, so exactly one decision wins.
import { PermissionDenied, TalonError } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import { ApprovalKind, type Approval } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { APPROVAL_ID, approvalState, Approvals, type ApprovalState } from '@talon/records/approvals';
import type { Principal } from '../auth.ts';

export { APPROVAL_ID };

export interface ApprovalView {
  id: string;
  kind: 'tool_call' | 'skill' | 'unknown';
  userId: string;
  conversation: { channel: string; threadId: string } | null;
  skill: string;
  version: string;
  tool: string;
  summary: string;
  argumentsJson: string;
  status: ApprovalState;
  requestedAtMs: number;
  expiresAtMs: number;
  decidedAtMs: number;
  decidedBy: string;
  reason: string;
  requestedBy: string;
  operatorOnly: boolean;
}

export function approvalView(a: Approval, now = Date.now()): ApprovalView {
  return {
    id: a.id,
    kind: a.kind === ApprovalKind.APPROVAL_KIND_TOOL_CALL ? 'tool_call' : a.kind === ApprovalKind.APPROVAL_KIND_SKILL ? 'skill' : 'unknown',
    userId: a.userId,
    conversation: a.conversation ? { channel: a.conversation.channel, threadId: a.conversation.threadId } : null,
    skill: a.skill,
    version: a.version,
    tool: a.tool,
    summary: a.summary,
    argumentsJson: a.argumentsJson.slice(0, 4096),
    status: approvalState(a, now),
    requestedAtMs: a.requestedAtMs,
    expiresAtMs: a.expiresAtMs,
    decidedAtMs: a.decidedAtMs,
    decidedBy: a.decidedBy,
    reason: a.reason,
    requestedBy: a.requestedBy,
    operatorOnly: a.operatorOnly || a.kind === ApprovalKind.APPROVAL_KIND_SKILL,
  };
}

/** May this principal see / decide this approval? Operators: all. Users: their own tool calls. */
export function mayDecide(p: Principal, a: Approval): boolean {
  if (p.scope === 'operator') return true;
  return a.userId === p.userId && !a.operatorOnly && a.kind !== ApprovalKind.APPROVAL_KIND_SKILL;
}

export class ApprovalStore {
  private readonly a: Approvals;
  constructor(nc: NatsConnection) {
    this.a = new Approvals(nc);
  }
  async open(jsm?: JetStreamManager): Promise<void> {
    await this.a.open(jsm);
  }

  async list(p: Principal, opts: { status?: string } = {}, now = Date.now()): Promise<ApprovalView[]> {
    return (await this.a.list())
      .filter((a) => p.scope === 'operator' || a.userId === p.userId)
      .map((a) => approvalView(a, now))
      .filter((v) => !opts.status || v.status === opts.status)
      .sort((x, y) => y.requestedAtMs - x.requestedAtMs);
  }

  async decide(p: Principal, id: string, approve: boolean, reason: string, now = Date.now()): Promise<ApprovalView> {
    const next = await this.a.decide(
      id,
      {
        approve,
        by: `token:${p.tokenId}`,
        reason,
        guard: (a) => {
          // Someone else's approval is reported exactly like a missing one: no probing of ids.
          if (p.scope !== 'operator' && a.userId !== p.userId) throw new TalonError('not_found', `no approval ${id}`);
          if (!mayDecide(p, a)) throw new PermissionDenied('only an operator can decide this approval');
        },
      },
      now,
    );
    return approvalView(next, now);
  }
}
