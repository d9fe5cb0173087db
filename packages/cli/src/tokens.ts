// API tokens: random, shown once, stored only as SHA-256 in the NATS KV bucket
// the gateway reads. Scopes: `user` (chat, own approvals) and `operator` (also
// the operator API and UI). Revocation and rotation take effect on the next
// request: the gateway caches nothing. Creating a token for a new user id also
// registers the user (talon_users). The token format is a wire contract
// (packages/kit/src/contracts.ts); the records are @talon/records/identity's.
import { newTokenValue } from '@talon/kit/contracts';
import type { NatsConnection } from '@talon/kit/nats';
import type { User } from '@talon/proto';
import { TokenError, tokenInfo, Tokens, USER_ID, USER_ID_RULE, Users, type TokenInfo } from '@talon/records/identity';

export { newTokenValue, USER_ID, type TokenInfo };

/** Registers a user if unknown; returns the record (existing or new). Refuses a disabled user. */
export async function ensureUser(nc: NatsConnection, userId: string, displayName = ''): Promise<User> {
  return (await new Users(nc).open()).ensure(userId, displayName);
}

export async function createToken(
  nc: NatsConnection,
  opts: { name: string; userId?: string; scope?: 'user' | 'operator' },
): Promise<{ token: string; info: TokenInfo }> {
  const userId = opts.userId ?? opts.name.toLowerCase();
  if (!USER_ID.test(userId)) throw new Error(`user id ${JSON.stringify(userId)} must be ${USER_ID_RULE} (pass --user)`);
  await ensureUser(nc, userId);
  return (await new Tokens(nc).open()).create({ name: opts.name, userId, scope: opts.scope === 'operator' ? 'operator' : 'user' });
}

export async function listTokens(nc: NatsConnection): Promise<Array<TokenInfo & { key: string }>> {
  return (await (await new Tokens(nc).open()).list()).map((t) => ({ ...tokenInfo(t.rec), key: t.key }));
}

/** Revokes by token id or name; returns how many tokens were revoked. */
export async function revokeToken(nc: NatsConnection, idOrName: string): Promise<number> {
  return (await new Tokens(nc).open()).revokeWhere((t) => t.id === idOrName || t.name === idOrName);
}

/** Revokes every active token of a user; returns how many. */
export async function revokeUserTokens(nc: NatsConnection, userId: string): Promise<number> {
  return (await new Tokens(nc).open()).revokeWhere((t) => t.userId === userId);
}

export class TokenSelectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenSelectionError';
  }
}

/**
 * Replaces one active token (by id, or by name when exactly one active token has it)
 * with a new value of the same name, user and scope. The old token is revoked before
 * the new one exists, so at no moment do both work.
 */
export async function rotateToken(nc: NatsConnection, idOrName: string): Promise<{ token: string; info: TokenInfo; replaced: TokenInfo }> {
  const active = (await listTokens(nc)).filter((t) => t.revokedAtMs === 0 && (t.id === idOrName || t.name === idOrName));
  if (active.length === 0) throw new TokenSelectionError(`no active token with id or name "${idOrName}" (see talon token list)`);
  if (active.length > 1)
    throw new TokenSelectionError(`${active.length} active tokens are named "${idOrName}"; rotate one by its id (see talon token list)`);
  try {
    return await (await new Tokens(nc).open()).rotate(active[0]!.key);
  } catch (err) {
    if (err instanceof TokenError) throw new TokenSelectionError(`token "${idOrName}" was revoked or rotated meanwhile`);
    throw err;
  }
}
