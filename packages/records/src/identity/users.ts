// talon_users: the people who use Talon (`user.<id>`). Written by the admin identity
// (`talon users`, `talon token create`); read by the gateway (pairing approval).
import type { JetStreamManager } from '@nats-io/jetstream';
import { KV_BUCKETS, userKey } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { User } from '@talon/proto';
import { openBucket, readAll, type Bucket } from '../kv.ts';

export const USER_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const USER_ID_RULE = '1-64 characters of a-z, 0-9, . _ -';

export function isUserId(id: string): boolean {
  return USER_ID.test(id);
}

export class Users {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.users, jsm);
    return this;
  }

  /** The registered user, or null (also for an id that cannot be a user id). */
  async get(id: string): Promise<User | null> {
    if (!isUserId(id)) return null;
    const e = await this.b.get(userKey(id));
    return e ? User.decode(e.value) : null;
  }

  async list(): Promise<User[]> {
    return (await readAll(this.b, 'user.', (v) => User.decode(v))).map((r) => r.value);
  }

  /** Registers a user if unknown; returns the record (existing or new). Refuses a disabled user. */
  async ensure(id: string, displayName = ''): Promise<User> {
    if (!isUserId(id)) throw new Error(`user id ${JSON.stringify(id)} must be ${USER_ID_RULE} (pass --user)`);
    const existing = await this.get(id);
    if (existing) {
      if (existing.disabledAtMs > 0) throw new Error(`user ${id} is disabled; enable it first with: talon users enable ${id}`);
      return existing;
    }
    const u: User = { id, displayName, createdAtMs: Date.now(), disabledAtMs: 0 };
    try {
      await this.b.kv.create(userKey(id), User.encode(u).finish());
    } catch {
      // Created concurrently: the stored record wins.
      const again = await this.b.kv.get(userKey(id));
      if (again && again.value.length > 0) return User.decode(again.value);
    }
    return u;
  }

  /** Marks a user disabled (registering it if unknown). */
  async disable(id: string, now = Date.now()): Promise<void> {
    const e = await this.b.kv.get(userKey(id));
    const u: User = e && e.value.length > 0 ? User.decode(e.value) : { id, displayName: '', createdAtMs: now, disabledAtMs: 0 };
    await this.b.kv.put(userKey(id), User.encode({ ...u, disabledAtMs: now }).finish());
  }

  /** Enables a registered user again; false when there is none. */
  async enable(id: string): Promise<boolean> {
    const e = await this.b.kv.get(userKey(id));
    if (!e || e.value.length === 0) return false;
    await this.b.kv.put(userKey(id), User.encode({ ...User.decode(e.value), disabledAtMs: 0 }).finish());
    return true;
  }
}
