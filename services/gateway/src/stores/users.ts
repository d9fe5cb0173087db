// Talon users (talon_users, written by the admin identity). Read-only here; the
// record and its rules are @talon/records/identity's.
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@talon/kit/nats';
import type { User } from '@talon/proto';
import { USER_ID, Users } from '@talon/records/identity';

export { USER_ID };

export class UserDirectory {
  private readonly users: Users;
  constructor(nc: NatsConnection) {
    this.users = new Users(nc);
  }
  async open(jsm?: JetStreamManager): Promise<void> {
    await this.users.open(jsm);
  }
  get(id: string): Promise<User | null> {
    return this.users.get(id);
  }
  list(): Promise<User[]> {
    return this.users.list();
  }
}
