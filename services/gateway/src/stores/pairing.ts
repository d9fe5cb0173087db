// Channel pairing: a platform account reaches the agent only after an operator
// linked it to a Talon user. Unknown senders get a code (and nothing else); the
// operator approves the code (`talon pairing approve CODE --user ID` or the UI).
import type { NatsConnection } from '@talon/kit/nats';
import type { ChannelIdentity, Pairing, PairingRequest } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { CODE, displayCode, newPairingCode, normalizeCode, Pairings } from '@talon/records/identity';
import type { UserDirectory } from './users.ts';

// Codes, requests and decisions are the record's (@talon/records/identity), shared with `talon pairing`.
export { CODE, displayCode, newPairingCode, normalizeCode };

export interface PairingView {
  channel: string;
  account: string;
  displayName: string;
  userId: string;
  approvedAtMs: number;
  approvedBy: string;
}

export interface PendingView {
  code: string;
  channel: string;
  account: string;
  displayName: string;
  createdAtMs: number;
  expiresAtMs: number;
}

export class PairingStore {
  private readonly p: Pairings;
  private readonly users: UserDirectory;
  private readonly opts: { ttlMs: number; noticeIntervalMs: number };

  constructor(nc: NatsConnection, users: UserDirectory, opts: { ttlMs: number; noticeIntervalMs: number }) {
    this.p = new Pairings(nc);
    this.users = users;
    this.opts = opts;
  }

  async open(jsm?: JetStreamManager): Promise<void> {
    await this.p.open(jsm);
  }

  /** The Talon user a platform account is paired with, or null. */
  lookup(channel: string, account: string): Promise<Pairing | null> {
    return this.p.lookup(channel, account);
  }

  /**
   * The pending code of an unknown sender (created on first contact, reused until it
   * expires). `notify` says whether to tell the sender now (rate limited per account).
   */
  request(identity: ChannelIdentity, threadId: string, now = Date.now()): Promise<{ request: PairingRequest; notify: boolean }> {
    return this.p.request(identity, threadId, this.opts, now);
  }

  async pending(now = Date.now()): Promise<PendingView[]> {
    return (await this.p.pending(now)).map((r) => ({
      code: displayCode(r.code),
      channel: r.identity?.channel ?? '',
      account: r.identity?.account ?? '',
      displayName: r.identity?.displayName ?? '',
      createdAtMs: r.createdAtMs,
      expiresAtMs: r.expiresAtMs,
    }));
  }

  async paired(): Promise<PairingView[]> {
    return (await this.p.paired()).map(({ pairing: p }) => ({
      channel: p.identity?.channel ?? '',
      account: p.identity?.account ?? '',
      displayName: p.identity?.displayName ?? '',
      userId: p.userId,
      approvedAtMs: p.approvedAtMs,
      approvedBy: p.approvedBy,
    }));
  }

  /** Links the code's sender to `userId`. Returns the pairing and the request (to notify the sender). */
  approve(codeInput: string, userId: string, by: string, now = Date.now()): Promise<{ pairing: Pairing; request: PairingRequest }> {
    return this.p.approve(codeInput, userId, by, (id) => this.users.get(id), now);
  }

  async deny(codeInput: string): Promise<void> {
    await this.p.deny(codeInput);
  }

  unpair(channel: string, account: string): Promise<boolean> {
    return this.p.unpair(channel, account);
  }
}
