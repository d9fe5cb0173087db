// `talon users list|add|disable|enable`: the people who use Talon. A user owns
// API tokens and paired chat identities; disabling one revokes both at once.
import type { Command } from 'commander';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS, userKey, type NatsConnection } from '@talon/kit';
import { Pairing, User } from '@talon/proto';
import { CliError, withAdminNats } from '../context.ts';
import { ensureUser, listTokens, revokeUserTokens, USER_ID } from '../tokens.ts';

export interface UserRow {
  user: User;
  registered: boolean;
  activeTokens: number;
  identities: string[];
}

async function values<T>(
  nc: NatsConnection,
  bucket: string,
  prefix: string,
  decode: (b: Uint8Array) => T,
): Promise<Array<{ key: string; value: T }>> {
  const kv = await new Kvm(nc).open(bucket);
  const out: Array<{ key: string; value: T }> = [];
  for await (const key of await kv.keys(`${prefix}>`)) {
    const e = await kv.get(key);
    if (e && e.operation === 'PUT' && e.value.length > 0) out.push({ key, value: decode(e.value) });
  }
  return out;
}

export async function listUsers(nc: NatsConnection): Promise<UserRow[]> {
  const [users, tokens, paired] = await Promise.all([
    values(nc, KV_BUCKETS.users, 'user.', (b) => User.decode(b)),
    listTokens(nc),
    values(nc, KV_BUCKETS.pairings, 'paired.', (b) => Pairing.decode(b)),
  ]);
  const ids = new Set([...users.map((u) => u.value.id), ...tokens.map((t) => t.userId), ...paired.map((p) => p.value.userId)]);
  return [...ids].sort().map((id) => {
    const u = users.find((x) => x.value.id === id)?.value;
    return {
      user: u ?? { id, displayName: '', createdAtMs: 0, disabledAtMs: 0 },
      registered: u !== undefined,
      activeTokens: tokens.filter((t) => t.userId === id && t.revokedAtMs === 0).length,
      identities: paired.filter((p) => p.value.userId === id).map((p) => `${p.value.identity?.channel}:${p.value.identity?.account}`),
    };
  });
}

/** Disables a user: marks the record, revokes every token and removes every pairing. */
export async function disableUser(nc: NatsConnection, id: string): Promise<{ tokens: number; pairings: number }> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.users);
  const e = await kv.get(userKey(id));
  const u: User = e && e.value.length > 0 ? User.decode(e.value) : { id, displayName: '', createdAtMs: Date.now(), disabledAtMs: 0 };
  await kv.put(userKey(id), User.encode({ ...u, disabledAtMs: Date.now() }).finish());
  const tokens = await revokeUserTokens(nc, id);
  const pk = await new Kvm(nc).open(KV_BUCKETS.pairings);
  let pairings = 0;
  for (const p of await values(nc, KV_BUCKETS.pairings, 'paired.', (b) => Pairing.decode(b))) {
    if (p.value.userId !== id) continue;
    await pk.delete(p.key);
    pairings += 1;
  }
  return { tokens, pairings };
}

export async function enableUser(nc: NatsConnection, id: string): Promise<boolean> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.users);
  const e = await kv.get(userKey(id));
  if (!e || e.value.length === 0) return false;
  await kv.put(userKey(id), User.encode({ ...User.decode(e.value), disabledAtMs: 0 }).finish());
  return true;
}

function checkId(id: string): string {
  if (!USER_ID.test(id)) throw new CliError(`user id "${id}" must be 1-64 characters of a-z, 0-9, . _ -`);
  return id;
}

export function registerUsers(program: Command): void {
  const users = program
    .command('users')
    .description('list, add, disable and enable Talon users (owners of tokens and paired chat identities)');
  users
    .command('list')
    .description('users with their active token count and paired chat identities')
    .action(async () => {
      const rows = await withAdminNats((nc) => listUsers(nc));
      if (rows.length === 0) {
        console.log('No users. Add one with: talon users add ID  (or create a token: talon token create --name NAME)');
        return;
      }
      for (const r of rows) {
        const state = r.user.disabledAtMs
          ? `disabled ${new Date(r.user.disabledAtMs).toISOString()}`
          : r.registered
            ? 'active'
            : 'active (unregistered)';
        console.log(
          `${r.user.id.padEnd(16)} ${state.padEnd(34)} tokens=${String(r.activeTokens).padEnd(3)} ${r.identities.join(', ') || '-'}${r.user.displayName ? `  "${r.user.displayName}"` : ''}`,
        );
      }
    });
  users
    .command('add')
    .description('register a user (pairing codes can then be approved for it)')
    .argument('<id>', 'user id: 1-64 of a-z, 0-9, . _ -')
    .option('--name <display name>', 'a display name', '')
    .action(async (id: string, o: { name: string }) => {
      const u = await withAdminNats((nc) => ensureUser(nc, checkId(id), o.name)).catch((err: Error) => {
        throw new CliError(err.message);
      });
      console.log(`User ${u.id} is registered.`);
    });
  users
    .command('disable')
    .description('disable a user: revokes all their tokens and removes their paired chat identities at once')
    .argument('<id>')
    .action(async (id: string) => {
      const r = await withAdminNats((nc) => disableUser(nc, checkId(id)));
      console.log(`User ${id} disabled: ${r.tokens} token(s) revoked, ${r.pairings} pairing(s) removed.`);
    });
  users
    .command('enable')
    .description('enable a disabled user again (tokens stay revoked: create new ones)')
    .argument('<id>')
    .action(async (id: string) => {
      if (!(await withAdminNats((nc) => enableUser(nc, checkId(id))))) throw new CliError(`no registered user ${id}`);
      console.log(`User ${id} enabled. Create a token with: talon token create --name NAME --user ${id}`);
    });
}
