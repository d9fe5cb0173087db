// Talon users (talon_users, written by the admin identity). Read-only here.
import { KV_BUCKETS, userKey, type NatsConnection } from '@talon/kit';
import { User } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { openBucket, readAll, type Bucket } from './kv.ts';

export const USER_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export class UserDirectory {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }
  async open(jsm?: JetStreamManager): Promise<void> {
    this.b = await openBucket(this.nc, KV_BUCKETS.users, jsm);
  }
  async get(id: string): Promise<User | null> {
    if (!USER_ID.test(id)) return null;
    const e = await this.b.get(userKey(id));
    return e ? User.decode(e.value) : null;
  }
  async list(): Promise<User[]> {
    return (await readAll(this.b, 'user.', (v) => User.decode(v))).map((r) => r.value);
  }
}
