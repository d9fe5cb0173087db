// Tool-call approvals in KV bucket talon_approvals (the record is the gateway's,
// proto talon.common.v1.Approval): the orchestrator creates a PENDING record for a
// call that needs the user's approval and reads the decision the user (gateway UI,
// API) or an operator (`talon approvals`) took by compare-and-set. The id is derived
// from the turn, the call's position and exactly what would run (tool, skill version,
// arguments), so a redelivered turn finds its own approval again and a decision can
// never be reused for a different call. A PENDING record past its expiry counts as
// expired; the orchestrator writes EXPIRED by compare-and-set so a late decision
// and the expiry cannot both win.
import { createHash } from 'node:crypto';
import { type KV } from '@nats-io/kv';
import { approvalKey, KV_BUCKETS } from '@talon/kit/subjects';
import { TalonError } from '@talon/kit/errors';
import { type NatsConnection, openDirectKv } from '@talon/kit/nats';
import { Approval, ApprovalKind, ApprovalStatus, type ConversationRef } from '@talon/proto';
import { approvalState, expired, isWrongSequence, liveEntry } from '@talon/records';

// The record's reading and its compare-and-set signal are @talon/records'.
export { isWrongSequence };

/** Arguments larger than this cannot be shown to the approver in full; such calls are refused. */
export const APPROVAL_ARGS_MAX_BYTES = 4096;
const SUMMARY_MAX = 200;

export interface ApprovalSubject {
  inboundId: string;
  callIndex: number;
  conversation: ConversationRef;
  tool: string;
  skill: string;
  version: string;
  /** Canonical JSON of the validated arguments. */
  argumentsJson: string;
}

/** `tc-` + 40 hex digits of SHA-256 over the turn, the call's position and what would run. */
export function approvalIdFor(s: Omit<ApprovalSubject, 'conversation'>): string {
  const h = createHash('sha256')
    .update(['talon-tool-approval-v1', s.inboundId, String(s.callIndex), s.tool, s.skill, s.version, s.argumentsJson].join('\n'))
    .digest('hex');
  return `tc-${h.slice(0, 40)}`;
}

/** One line for the approver: skill, version and the arguments (cut). */
export function approvalSummary(s: Pick<ApprovalSubject, 'skill' | 'version' | 'tool' | 'argumentsJson'>): string {
  const what = s.skill ? `${s.skill} ${s.version}` : s.tool;
  const line = `${what}: ${s.argumentsJson.replace(/\s+/g, ' ')}`;
  return line.length <= SUMMARY_MAX ? line : `${line.slice(0, SUMMARY_MAX - 3)}...`;
}

export function buildApproval(s: ApprovalSubject, now: number, ttlMs: number): Approval {
  return {
    id: approvalIdFor(s),
    kind: ApprovalKind.APPROVAL_KIND_TOOL_CALL,
    userId: s.conversation.userId,
    conversation: s.conversation,
    skill: s.skill,
    version: s.version,
    tool: s.tool,
    summary: approvalSummary(s),
    argumentsJson: s.argumentsJson,
    status: ApprovalStatus.APPROVAL_STATUS_PENDING,
    requestedAtMs: now,
    expiresAtMs: now + ttlMs,
    decidedAtMs: 0,
    decidedBy: '',
    reason: '',
    requestedBy: 'orchestrator',
    inboundId: s.inboundId,
    operatorOnly: false,
  };
}

export type DecisionState = 'approved' | 'denied' | 'expired' | 'pending' | 'mismatch';

/** What a stored record means for the call `s`. Pure. */
export function decisionOf(a: Approval, s: ApprovalSubject, now: number): DecisionState {
  if (
    a.kind !== ApprovalKind.APPROVAL_KIND_TOOL_CALL ||
    a.id !== approvalIdFor(s) ||
    a.inboundId !== s.inboundId ||
    a.userId !== s.conversation.userId ||
    a.tool !== s.tool ||
    a.skill !== s.skill ||
    a.version !== s.version ||
    a.argumentsJson !== s.argumentsJson
  )
    return 'mismatch';
  const state = approvalState(a, now);
  return state === 'unknown' ? 'mismatch' : state;
}

/** Pending for the record alone (no call to compare with): what the resumer needs to know. */
export function isSettled(a: Approval, now: number): boolean {
  return approvalState(a, now) !== 'pending';
}

/** A KV failure that is not a lost compare-and-set: transient, so the turn is retried rather than failed. */
export async function kvCall<T>(bucket: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isWrongSequence(err) || err instanceof TalonError) throw err;
    throw new TalonError(
      'unavailable',
      `NATS KV bucket ${bucket} is unreachable (${String((err as Error)?.message ?? err).slice(0, 200)})`,
      {
        cause: err,
      },
    );
  }
}

export class ApprovalBook {
  private readonly nc: NatsConnection;
  private kv: KV | undefined;

  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async start(): Promise<void> {
    this.kv = await openDirectKv(this.nc, KV_BUCKETS.approvals);
  }

  private bucket(): KV {
    if (!this.kv) throw new Error('approval store not started');
    return this.kv;
  }

  async get(id: string): Promise<{ approval: Approval; revision: number } | undefined> {
    const e = liveEntry(await kvCall(KV_BUCKETS.approvals, () => this.bucket().get(approvalKey(id))));
    if (!e) return undefined;
    return { approval: Approval.decode(e.value), revision: e.revision };
  }

  /** Creates the PENDING record; false when it exists already (a redelivered turn asked before). */
  async create(a: Approval): Promise<boolean> {
    try {
      await kvCall(KV_BUCKETS.approvals, () => this.bucket().create(approvalKey(a.id), Approval.encode(a).finish()));
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /**
   * The record with an overdue PENDING status written as EXPIRED (compare-and-set:
   * if someone decided at the last moment, their decision is returned instead).
   */
  async settle(id: string, now = Date.now()): Promise<Approval | undefined> {
    for (let i = 0; i < 3; i++) {
      const cur = await this.get(id);
      if (!cur) return undefined;
      const a = cur.approval;
      if (a.status !== ApprovalStatus.APPROVAL_STATUS_PENDING || !isSettled(a, now)) return a;
      const next = expired(a, 'orchestrator', now);
      try {
        await kvCall(KV_BUCKETS.approvals, () => this.bucket().update(approvalKey(id), Approval.encode(next).finish(), cur.revision));
        return next;
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
      }
    }
    return (await this.get(id))?.approval;
  }
}
