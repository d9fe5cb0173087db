// `talon users list|add|disable|enable`: the people who use Talon. A user owns
// API tokens and paired chat identities; disabling one revokes both at once.
import type { Command } from 'commander';
import type { NatsConnection } from '@talon/kit/nats';
import type { User } from '@talon/proto';
import { Pairings, Users } from '@talon/records/identity';
import { CliError, withAdminNats } from '../context.ts';
import { ensureUser, listTokens, revokeUserTokens, USER_ID } from '../tokens.ts';

export interface UserRow {
  user: User;
  registered: boolean;
  activeTokens: number;
  identities: string[];
}

export async function listUsers(nc: NatsConnection): Promise<UserRow[]> {
  const [users, tokens, paired] = await Promise.all([
    new Users(nc).open().then((u) => u.list()),
    listTokens(nc),
    new Pairings(nc).open().then((p) => p.paired()),
  ]);
  const ids = new Set([...users.map((u) => u.id), ...tokens.map((t) => t.userId), ...paired.map((p) => p.pairing.userId)]);
  return [...ids].sort().map((id) => {
    const u = users.find((x) => x.id === id);
    return {
      user: u ?? { id, displayName: '', createdAtMs: 0, disabledAtMs: 0 },
      registered: u !== undefined,
      activeTokens: tokens.filter((t) => t.userId === id && t.revokedAtMs === 0).length,
      identities: paired.filter((p) => p.pairing.userId === id).map((p) => `${p.pairing.identity?.channel}:${p.pairing.identity?.account}`),
    };
  });
}

/** Disables a user: marks the record, revokes every token and removes every pairing. */
export async function disableUser(nc: NatsConnection, id: string): Promise<{ tokens: number; pairings: number }> {
  await (await new Users(nc).open()).disable(id);
  const tokens = await revokeUserTokens(nc, id);
  const pairings = await (await new Pairings(nc).open()).unpairUser(id);
  return { tokens, pairings };
}

export async function enableUser(nc: NatsConnection, id: string): Promise<boolean> {
  return (await new Users(nc).open()).enable(id);
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
