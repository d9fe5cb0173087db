// talon_pairings: which chat-platform account acts as which Talon user. An unknown
// sender gets a code (`code.<CODE>`, `pending.<ch>.<account>`); an operator approves
// or denies it (gateway operator API and UI, `talon pairing`), which becomes
// `paired.<ch>.<account>`. A decision is a compare-and-set on the code, so two
// operators cannot both decide one code.
import { randomInt } from 'node:crypto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { KV_BUCKETS, pairedKey, pairingCodeKey, pendingPairingKey } from '@talon/kit/subjects';
import { TalonError } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import { Pairing, PairingRequest, type ChannelIdentity, type User } from '@talon/proto';
import { openBucket, readAll, type Bucket } from '../kv.ts';

/** No 0/O, 1/I/L: codes are read aloud and typed. 32 symbols, 8 of them = 40 bits. */
const ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
export const CODE = /^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{8}$/;
export const CODE_RULE = 'a pairing code is 8 letters and digits, like ABCD-EF23';

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

/** Who may be paired: a registered user that is not disabled (looked up by the caller's means). */
export type UserLookup = (id: string) => Promise<User | null>;

export class Pairings {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.pairings, jsm);
    return this;
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
  async request(
    identity: ChannelIdentity,
    threadId: string,
    opts: { ttlMs: number; noticeIntervalMs: number },
    now = Date.now(),
  ): Promise<{ request: PairingRequest; notify: boolean }> {
    const pkey = pendingPairingKey(identity.channel, identity.account);
    const e = await this.b.get(pkey);
    if (e) {
      const req = PairingRequest.decode(e.value);
      if (req.expiresAtMs > now && (await this.b.get(pairingCodeKey(req.code)))) {
        if (now - req.notifiedAtMs < opts.noticeIntervalMs) return { request: req, notify: false };
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
        expiresAtMs: now + opts.ttlMs,
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

  /** Unexpired pending requests, in key order. */
  async pending(now = Date.now()): Promise<PairingRequest[]> {
    const all = await readAll(this.b, 'code.', (v) => PairingRequest.decode(v));
    return all.map((r) => r.value).filter((r) => r.expiresAtMs > now);
  }

  async paired(): Promise<Array<{ key: string; pairing: Pairing }>> {
    return (await readAll(this.b, 'paired.', (v) => Pairing.decode(v))).map((r) => ({ key: r.key, pairing: r.value }));
  }

  /**
   * Links the code's sender to `userId` (an existing, enabled user). Returns the pairing
   * and the request (to notify the sender). Throws TalonError: invalid_argument,
   * not_found, conflict (someone else decided first).
   */
  async approve(
    codeInput: string,
    userId: string,
    by: string,
    users: UserLookup,
    now = Date.now(),
  ): Promise<{ pairing: Pairing; request: PairingRequest }> {
    const code = normalizeCode(codeInput);
    if (!code) throw new TalonError('invalid_argument', CODE_RULE);
    const e = await this.b.get(pairingCodeKey(code));
    if (!e)
      throw new TalonError(
        'not_found',
        `no pending pairing with code ${displayCode(code)} (it may have expired; ask the sender to write again)`,
      );
    const req = PairingRequest.decode(e.value);
    if (req.expiresAtMs <= now)
      throw new TalonError('not_found', `pairing code ${displayCode(code)} expired; ask the sender to write again for a new one`);
    const user = await users(userId);
    if (!user) throw new TalonError('not_found', `no Talon user ${userId} (create one with: talon users add ${userId})`);
    if (user.disabledAtMs > 0) throw new TalonError('invalid_argument', `user ${userId} is disabled (talon users enable ${userId})`);
    const id = req.identity!;
    const pairing: Pairing = { identity: id, userId, approvedAtMs: now, approvedBy: by, code, threadId: req.threadId };
    // The code is emptied by compare-and-set first: exactly one decision wins.
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

  /** Refuses a code (the sender gets a new one if they write again). Throws TalonError. */
  async deny(codeInput: string): Promise<PairingRequest> {
    const code = normalizeCode(codeInput);
    if (!code) throw new TalonError('invalid_argument', CODE_RULE);
    const e = await this.b.get(pairingCodeKey(code));
    if (!e) throw new TalonError('not_found', `no pending pairing with code ${displayCode(code)}`);
    const req = PairingRequest.decode(e.value);
    await this.b.kv.delete(pairingCodeKey(code));
    if (req.identity) await this.b.kv.delete(pendingPairingKey(req.identity.channel, req.identity.account)).catch(() => undefined);
    return req;
  }

  /** Removes a pairing; false when there was none. */
  async unpair(channel: string, account: string): Promise<boolean> {
    const key = pairedKey(channel, account);
    if (!(await this.b.get(key))) return false;
    await this.b.kv.delete(key);
    return true;
  }

  /** Removes every pairing of a user; returns how many. */
  async unpairUser(userId: string): Promise<number> {
    let n = 0;
    for (const p of await this.paired()) {
      if (p.pairing.userId !== userId) continue;
      await this.b.kv.delete(p.key);
      n += 1;
    }
    return n;
  }
}
