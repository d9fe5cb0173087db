// Channel pairing: a platform account reaches the agent only after an operator
// linked it to a Talon user. Unknown senders get a code (and nothing else); the
// operator approves the code (`talon pairing approve CODE --user ID` or the UI).
import { randomInt } from 'node:crypto';
import { KV_BUCKETS, pairedKey, pairingCodeKey, pendingPairingKey, TalonError, type NatsConnection } from '@talon/kit';
import { Pairing, PairingRequest, type ChannelIdentity } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { openBucket, readAll, type Bucket } from './kv.ts';
import type { UserDirectory } from './users.ts';

/** No 0/O, 1/I/L: codes are read aloud and typed. 32 symbols, 8 of them = 40 bits. */
const ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
export const CODE = /^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{8}$/;

export function newPairingCode(): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s;
}

/** "abcd-efgh", "ABCD EFGH" -> "ABCDEFGH"; undefined when it cannot be a code. */
export function normalizeCode(input: string): string | undefined {
  const c = input.toUpperCase().replace(/[\s-]/g, '');
  return CODE.test(c) ? c : undefined;
}

export function displayCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

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
  private b!: Bucket;
  private readonly nc: NatsConnection;
  private readonly users: UserDirectory;
  private readonly ttlMs: number;
  private readonly noticeIntervalMs: number;

  constructor(nc: NatsConnection, users: UserDirectory, opts: { ttlMs: number; noticeIntervalMs: number }) {
    this.nc = nc;
    this.users = users;
    this.ttlMs = opts.ttlMs;
    this.noticeIntervalMs = opts.noticeIntervalMs;
  }

  async open(jsm?: JetStreamManager): Promise<void> {
    this.b = await openBucket(this.nc, KV_BUCKETS.pairings, jsm);
  }

  /** The Talon user a platform account is paired with, or null. */
  async lookup(channel: string, account: string): Promise<Pairing | null> {
    const e = await this.b.get(pairedKey(channel, account));
    return e ? Pairing.decode(e.value) : null;
  }

  /**
   * The pending code of an unknown sender (created on first contact, reused until it
   * expires). `notify` says whether to tell the sender now (rate limited per account).
   */
  async request(identity: ChannelIdentity, threadId: string, now = Date.now()): Promise<{ request: PairingRequest; notify: boolean }> {
    const pkey = pendingPairingKey(identity.channel, identity.account);
    const e = await this.b.get(pkey);
    if (e) {
      const req = PairingRequest.decode(e.value);
      if (req.expiresAtMs > now && (await this.b.get(pairingCodeKey(req.code)))) {
        if (now - req.notifiedAtMs < this.noticeIntervalMs) return { request: req, notify: false };
        const next = { ...req, notifiedAtMs: now, threadId };
        try {
          await this.b.kv.update(pkey, PairingRequest.encode(next).finish(), e.revision);
        } catch {
          // Another replica updated it at the same moment: it sends the notice.
          return { request: req, notify: false };
        }
        await this.b.kv.put(pairingCodeKey(req.code), PairingRequest.encode(next).finish());
        return { request: next, notify: true };
      }
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      const req: PairingRequest = {
        code: newPairingCode(),
        identity,
        createdAtMs: now,
        expiresAtMs: now + this.ttlMs,
        notifiedAtMs: now,
        threadId,
      };
      const bytes = PairingRequest.encode(req).finish();
      try {
        await this.b.kv.create(pairingCodeKey(req.code), bytes);
      } catch {
        continue; // code collision: draw again
      }
      await this.b.kv.put(pkey, bytes);
      return { request: req, notify: true };
    }
    throw new TalonError('unavailable', 'could not allocate a pairing code; retry');
  }

  async pending(now = Date.now()): Promise<PendingView[]> {
    const all = await readAll(this.b, 'code.', (v) => PairingRequest.decode(v));
    return all
      .map((r) => r.value)
      .filter((r) => r.expiresAtMs > now)
      .map((r) => ({
        code: displayCode(r.code),
        channel: r.identity?.channel ?? '',
        account: r.identity?.account ?? '',
        displayName: r.identity?.displayName ?? '',
        createdAtMs: r.createdAtMs,
        expiresAtMs: r.expiresAtMs,
      }));
  }

  async paired(): Promise<PairingView[]> {
    const all = await readAll(this.b, 'paired.', (v) => Pairing.decode(v));
    return all.map(({ value: p }) => ({
      channel: p.identity?.channel ?? '',
      account: p.identity?.account ?? '',
      displayName: p.identity?.displayName ?? '',
      userId: p.userId,
      approvedAtMs: p.approvedAtMs,
      approvedBy: p.approvedBy,
    }));
  }

  /** Links the code's sender to `userId`. Returns the pairing and the request (to notify the sender). */
  async approve(codeInput: string, userId: string, by: string, now = Date.now()): Promise<{ pairing: Pairing; request: PairingRequest }> {
    const code = normalizeCode(codeInput);
    if (!code) throw new TalonError('invalid_argument', 'a pairing code is 8 letters and digits, like ABCD-EF23');
    const e = await this.b.get(pairingCodeKey(code));
    if (!e)
      throw new TalonError(
        'not_found',
        `no pending pairing with code ${displayCode(code)} (it may have expired; ask the sender to write again)`,
      );
    const req = PairingRequest.decode(e.value);
    if (req.expiresAtMs <= now)
      throw new TalonError('not_found', `pairing code ${displayCode(code)} expired; ask the sender to write again for a new one`);
    const user = await this.users.get(userId);
    if (!user) throw new TalonError('not_found', `no Talon user ${userId} (create one with: talon users add ${userId})`);
    if (user.disabledAtMs > 0) throw new TalonError('invalid_argument', `user ${userId} is disabled`);
    const id = req.identity!;
    const pairing: Pairing = { identity: id, userId, approvedAtMs: now, approvedBy: by, code, threadId: req.threadId };
    try {
      await this.b.kv.update(pairingCodeKey(code), new Uint8Array(0), e.revision);
    } catch (err) {
      throw new TalonError('conflict', `pairing code ${displayCode(code)} was just decided by someone else`, { cause: err });
    }
    await this.b.kv.put(pairedKey(id.channel, id.account), Pairing.encode(pairing).finish());
    await this.b.kv.delete(pairingCodeKey(code)).catch(() => undefined);
    await this.b.kv.delete(pendingPairingKey(id.channel, id.account)).catch(() => undefined);
    return { pairing, request: req };
  }

  async deny(codeInput: string): Promise<void> {
    const code = normalizeCode(codeInput);
    if (!code) throw new TalonError('invalid_argument', 'a pairing code is 8 letters and digits, like ABCD-EF23');
    const e = await this.b.get(pairingCodeKey(code));
    if (!e) throw new TalonError('not_found', `no pending pairing with code ${displayCode(code)}`);
    const req = PairingRequest.decode(e.value);
    await this.b.kv.delete(pairingCodeKey(code));
    if (req.identity) await this.b.kv.delete(pendingPairingKey(req.identity.channel, req.identity.account)).catch(() => undefined);
  }

  async unpair(channel: string, account: string): Promise<boolean> {
    const key = pairedKey(channel, account);
    if (!(await this.b.get(key))) return false;
    await this.b.kv.delete(key);
    return true;
  }
}
