// What an approval record (talon_approvals) means now: one reading for the
// gateway, the CLI and the orchestrator, so a PENDING record past its deadline is
// "expired" everywhere, whether or not the expiry has been written back yet.
import type { JetStreamManager } from '@nats-io/jetstream';
import { approvalKey, KV_BUCKETS } from '@talon/kit/subjects';
import { TalonError } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import { Approval, ApprovalStatus } from '@talon/proto';
import { isWrongSequence, openBucket, readAll, type Bucket } from './kv.ts';

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

// ---- decisions and the talon_approvals repository ----
// Requesters (the orchestrator) create PENDING records; the owning user (gateway),
// an operator (gateway operator API, `talon approvals`) decides, and the orchestrator
// writes EXPIRED for an overdue one — each by compare-and-set on the record's
// revision, so exactly one outcome wins.

export const APPROVAL_ID = /^[A-Za-z0-9_-]{1,64}$/;
export const APPROVAL_ID_RULE = 'approval ids are 1-64 letters, digits, _ and -';

/** The record after a decision. Pure; the caller has checked it is pending. */
export function decided(a: Approval, approve: boolean, by: string, reason: string, now: number): Approval {
  return {
    ...a,
    status: approve ? ApprovalStatus.APPROVAL_STATUS_APPROVED : ApprovalStatus.APPROVAL_STATUS_DENIED,
    decidedAtMs: now,
    decidedBy: by,
    reason: reason.slice(0, 500),
  };
}

/** The record after its expiry was written back. Pure. */
export function expired(a: Approval, by: string, now: number): Approval {
  return {
    ...a,
    status: ApprovalStatus.APPROVAL_STATUS_EXPIRED,
    decidedAtMs: now,
    decidedBy: by,
    reason: 'no decision before the approval expired',
  };
}

export class Approvals {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.approvals, jsm);
    return this;
  }

  /** The live record and its revision. Throws TalonError('unavailable') when NATS fails. */
  async get(id: string): Promise<{ approval: Approval; revision: number } | undefined> {
    const e = await this.b.get(approvalKey(id));
    return e ? { approval: Approval.decode(e.value), revision: e.revision } : undefined;
  }

  async list(): Promise<Approval[]> {
    return (await readAll(this.b, 'approval.', (v) => Approval.decode(v))).map((r) => r.value);
  }

  /** Creates a record; false when one exists already under its id. */
  async create(a: Approval): Promise<boolean> {
    try {
      await this.b.kv.create(approvalKey(a.id), Approval.encode(a).finish());
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /** Compare-and-set; throws (isWrongSequence) when the record changed since `revision`. */
  async update(a: Approval, revision: number): Promise<void> {
    await this.b.kv.update(approvalKey(a.id), Approval.encode(a).finish(), revision);
  }

  /**
   * Decides a pending approval by compare-and-set. `guard` sees the record first (access
   * checks). Throws TalonError: invalid_argument, not_found, conflict (already decided,
   * or decided by someone else meanwhile).
   */
  async decide(
    id: string,
    d: { approve: boolean; by: string; reason: string; guard?: (a: Approval) => void },
    now = Date.now(),
  ): Promise<Approval> {
    if (!APPROVAL_ID.test(id)) throw new TalonError('invalid_argument', APPROVAL_ID_RULE);
    const cur = await this.get(id);
    if (!cur) throw new TalonError('not_found', `no approval ${id}`);
    d.guard?.(cur.approval);
    const state = approvalState(cur.approval, now);
    if (state !== 'pending') throw new TalonError('conflict', `approval ${id} is already ${state}`);
    const next = decided(cur.approval, d.approve, d.by, d.reason, now);
    try {
      await this.update(next, cur.revision);
    } catch (err) {
      throw new TalonError('conflict', `approval ${id} was decided by someone else just now`, { cause: err });
    }
    return next;
  }
}
