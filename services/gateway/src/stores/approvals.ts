// Approvals (talon_approvals): requesters create PENDING records; the user who
// owns the conversation (tool calls) or an operator decides them here, by
// compare-and-set on the record's revision, so exactly one decision wins.
import { approvalKey, approvalState, KV_BUCKETS, PermissionDenied, TalonError, type ApprovalState, type NatsConnection } from '@talon/kit';
import { Approval, ApprovalKind, ApprovalStatus } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Principal } from '../auth.ts';
import { openBucket, readAll, type Bucket } from './kv.ts';

export const APPROVAL_ID = /^[A-Za-z0-9_-]{1,64}$/;

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
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }
  async open(jsm?: JetStreamManager): Promise<void> {
    this.b = await openBucket(this.nc, KV_BUCKETS.approvals, jsm);
  }

  async list(p: Principal, opts: { status?: string } = {}, now = Date.now()): Promise<ApprovalView[]> {
    const all = await readAll(this.b, 'approval.', (v) => Approval.decode(v));
    return all
      .map((r) => r.value)
      .filter((a) => p.scope === 'operator' || a.userId === p.userId)
      .map((a) => approvalView(a, now))
      .filter((v) => !opts.status || v.status === opts.status)
      .sort((x, y) => y.requestedAtMs - x.requestedAtMs);
  }

  async decide(p: Principal, id: string, approve: boolean, reason: string, now = Date.now()): Promise<ApprovalView> {
    if (!APPROVAL_ID.test(id)) throw new TalonError('invalid_argument', 'approval ids are 1-64 letters, digits, _ and -');
    const e = await this.b.get(approvalKey(id));
    const a = e ? Approval.decode(e.value) : undefined;
    // Someone else's approval is reported exactly like a missing one: no probing of ids.
    if (!e || !a || (p.scope !== 'operator' && a.userId !== p.userId)) throw new TalonError('not_found', `no approval ${id}`);
    if (!mayDecide(p, a)) throw new PermissionDenied('only an operator can decide this approval');
    const status = approvalState(a, now);
    if (status !== 'pending') throw new TalonError('conflict', `approval ${id} is already ${status}`);
    const next: Approval = {
      ...a,
      status: approve ? ApprovalStatus.APPROVAL_STATUS_APPROVED : ApprovalStatus.APPROVAL_STATUS_DENIED,
      decidedAtMs: now,
      decidedBy: `token:${p.tokenId}`,
      reason: reason.slice(0, 500),
    };
    try {
      await this.b.kv.update(approvalKey(id), Approval.encode(next).finish(), e.revision);
    } catch (err) {
      throw new TalonError('conflict', `approval ${id} was decided by someone else just now`, { cause: err });
    }
    return approvalView(next, now);
  }
}
