// API tokens: random, shown once, stored only as SHA-256 in the NATS KV bucket
// the gateway reads. Revocation takes effect on the next request.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS, type NatsConnection } from '@talon/kit';
import { ApiToken, Scope } from '@talon/proto';

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

export async function createToken(
  nc: NatsConnection,
  opts: { name: string; userId?: string; scope?: 'user' | 'operator' },
): Promise<{ token: string; info: TokenInfo }> {
  const userId = opts.userId ?? opts.name.toLowerCase();
  if (!USER_ID.test(userId)) throw new Error(`user id ${JSON.stringify(userId)} must be 1-64 of a-z, 0-9, . _ - (pass --user)`);
  const kv = await new Kvm(nc).open(KV_BUCKETS.tokens);
  const token = newTokenValue();
  const rec: ApiToken = {
    id: randomUUID(),
    name: opts.name,
    userId,
    scope: opts.scope === 'operator' ? Scope.SCOPE_OPERATOR : Scope.SCOPE_USER,
    createdAtMs: Date.now(),
    revokedAtMs: 0,
  };
  await kv.create(createHash('sha256').update(token).digest('hex'), ApiToken.encode(rec).finish());
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
  const kv = await new Kvm(nc).open(KV_BUCKETS.tokens);
  const out: Array<TokenInfo & { key: string }> = [];
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (e && e.operation === 'PUT' && e.value.length > 0) out.push({ ...toInfo(ApiToken.decode(e.value)), key });
  }
  return out.sort((a, b) => a.createdAtMs - b.createdAtMs);
}

/** Revokes by token id or name; returns how many tokens were revoked. */
export async function revokeToken(nc: NatsConnection, idOrName: string): Promise<number> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.tokens);
  let n = 0;
  for (const t of await listTokens(nc)) {
    if ((t.id === idOrName || t.name === idOrName) && t.revokedAtMs === 0) {
      const e = await kv.get(t.key);
      if (!e) continue;
      const rec = ApiToken.decode(e.value);
      rec.revokedAtMs = Date.now();
      await kv.put(t.key, ApiToken.encode(rec).finish());
      n += 1;
    }
  }
  return n;
}
