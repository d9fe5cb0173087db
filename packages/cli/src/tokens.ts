// API tokens: random, shown once, stored only as SHA-256 in the NATS KV bucket
// the gateway reads. Scopes: `user` (chat, own approvals) and `operator` (also
// the operator API and UI). Revocation and rotation take effect on the next
// request: the gateway caches nothing. Creating a token for a new user id also
// registers the user (talon_users).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { KV_BUCKETS, userKey, type NatsConnection } from '@talon/kit';
import { ApiToken, Scope, User } from '@talon/proto';

export interface TokenInfo {
  id: string;
  name: string;
  userId: string;
  scope: 'user' | 'operator';
  createdAtMs: number;
  revokedAtMs: number;
}

export const USER_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export function newTokenValue(): string {
  return `talon_pat_${randomBytes(32).toString('hex')}`;
}

function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

async function tokensKv(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).open(KV_BUCKETS.tokens);
}

/** Registers a user if unknown; returns the record (existing or new). Refuses a disabled user. */
export async function ensureUser(nc: NatsConnection, userId: string, displayName = ''): Promise<User> {
  if (!USER_ID.test(userId)) throw new Error(`user id ${JSON.stringify(userId)} must be 1-64 of a-z, 0-9, . _ - (pass --user)`);
  const kv = await new Kvm(nc).open(KV_BUCKETS.users);
  const e = await kv.get(userKey(userId));
  if (e && e.operation === 'PUT' && e.value.length > 0) {
    const u = User.decode(e.value);
    if (u.disabledAtMs > 0) throw new Error(`user ${userId} is disabled; enable it first with: talon users enable ${userId}`);
    return u;
  }
  const u: User = { id: userId, displayName, createdAtMs: Date.now(), disabledAtMs: 0 };
  try {
    await kv.create(userKey(userId), User.encode(u).finish());
  } catch {
    // Created concurrently: the stored record wins.
    const again = await kv.get(userKey(userId));
    if (again && again.value.length > 0) return User.decode(again.value);
  }
  return u;
}

export async function createToken(
  nc: NatsConnection,
  opts: { name: string; userId?: string; scope?: 'user' | 'operator' },
): Promise<{ token: string; info: TokenInfo }> {
  const userId = opts.userId ?? opts.name.toLowerCase();
  if (!USER_ID.test(userId)) throw new Error(`user id ${JSON.stringify(userId)} must be 1-64 of a-z, 0-9, . _ - (pass --user)`);
  await ensureUser(nc, userId);
  const kv = await tokensKv(nc);
  const token = newTokenValue();
  const rec: ApiToken = {
    id: randomUUID(),
    name: opts.name,
    userId,
    scope: opts.scope === 'operator' ? Scope.SCOPE_OPERATOR : Scope.SCOPE_USER,
    createdAtMs: Date.now(),
    revokedAtMs: 0,
  };
  await kv.create(tokenHash(token), ApiToken.encode(rec).finish());
  return { token, info: toInfo(rec) };
}

function toInfo(rec: ApiToken): TokenInfo {
  return {
    id: rec.id,
    name: rec.name,
    userId: rec.userId,
    scope: rec.scope === Scope.SCOPE_OPERATOR ? 'operator' : 'user',
    createdAtMs: rec.createdAtMs,
    revokedAtMs: rec.revokedAtMs,
  };
}

export async function listTokens(nc: NatsConnection): Promise<Array<TokenInfo & { key: string }>> {
  const kv = await tokensKv(nc);
  const out: Array<TokenInfo & { key: string }> = [];
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (e && e.operation === 'PUT' && e.value.length > 0) out.push({ ...toInfo(ApiToken.decode(e.value)), key });
  }
  return out.sort((a, b) => a.createdAtMs - b.createdAtMs);
}

async function revokeKey(kv: KV, key: string): Promise<boolean> {
  const e = await kv.get(key);
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return false;
  const rec = ApiToken.decode(e.value);
  if (rec.revokedAtMs > 0) return false;
  rec.revokedAtMs = Date.now();
  // Compare-and-set: a concurrent rotation or revocation of the same token wins once.
  await kv.update(key, ApiToken.encode(rec).finish(), e.revision);
  return true;
}

/** Revokes by token id or name; returns how many tokens were revoked. */
export async function revokeToken(nc: NatsConnection, idOrName: string): Promise<number> {
  const kv = await tokensKv(nc);
  let n = 0;
  for (const t of await listTokens(nc)) {
    if ((t.id === idOrName || t.name === idOrName) && t.revokedAtMs === 0 && (await revokeKey(kv, t.key))) n += 1;
  }
  return n;
}

/** Revokes every active token of a user; returns how many. */
export async function revokeUserTokens(nc: NatsConnection, userId: string): Promise<number> {
  const kv = await tokensKv(nc);
  let n = 0;
  for (const t of await listTokens(nc)) if (t.userId === userId && t.revokedAtMs === 0 && (await revokeKey(kv, t.key))) n += 1;
  return n;
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
  const old = active[0]!;
  const kv = await tokensKv(nc);
  if (!(await revokeKey(kv, old.key))) throw new TokenSelectionError(`token "${idOrName}" was revoked or rotated meanwhile`);
  const token = newTokenValue();
  const rec: ApiToken = {
    id: randomUUID(),
    name: old.name,
    userId: old.userId,
    scope: old.scope === 'operator' ? Scope.SCOPE_OPERATOR : Scope.SCOPE_USER,
    createdAtMs: Date.now(),
    revokedAtMs: 0,
  };
  await kv.create(tokenHash(token), ApiToken.encode(rec).finish());
  const { key: _key, ...replaced } = old;
  return { token, info: toInfo(rec), replaced };
}
