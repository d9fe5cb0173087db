// talon_tokens: API tokens, keyed by the SHA-256 of the token (the token format and
// hash are wire contracts in packages/kit/src/contracts.ts). Written by the admin
// identity (`talon token`) and the gateway (revoke, rotate); read by the gateway.
// Every change is a compare-and-set, so a revocation and a rotation of one token
// cannot both win, and a rotation revokes the old token before the new one exists.
import { randomUUID } from 'node:crypto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { hashToken, newTokenValue } from '@talon/kit/contracts';
import { KV_BUCKETS } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { ApiToken, Scope } from '@talon/proto';
import { openBucket, readAll, type Bucket } from '../kv.ts';

export type TokenScope = 'user' | 'operator';

export interface TokenInfo {
  id: string;
  name: string;
  userId: string;
  scope: TokenScope;
  createdAtMs: number;
  revokedAtMs: number;
}

export function scopeName(s: Scope): TokenScope {
  return s === Scope.SCOPE_OPERATOR ? 'operator' : 'user';
}

export function tokenInfo(rec: ApiToken): TokenInfo {
  return {
    id: rec.id,
    name: rec.name,
    userId: rec.userId,
    scope: scopeName(rec.scope),
    createdAtMs: rec.createdAtMs,
    revokedAtMs: rec.revokedAtMs,
  };
}

export class TokenError extends Error {
  readonly code: 'not_found' | 'revoked' | 'conflict';
  constructor(code: TokenError['code'], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TokenError';
    this.code = code;
  }
}

export interface StoredToken {
  /** The KV key: the token's hash. */
  key: string;
  revision: number;
  rec: ApiToken;
}

export class Tokens {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.tokens, jsm);
    return this;
  }

  /** The live record stored under a token hash. Throws TalonError('unavailable') when NATS fails. */
  async byHash(hash: string): Promise<StoredToken | undefined> {
    const e = await this.b.get(hash);
    return e ? { key: e.key, revision: e.revision, rec: ApiToken.decode(e.value) } : undefined;
  }

  /** Every token record, oldest first. */
  async list(): Promise<StoredToken[]> {
    const all = await readAll(this.b, '', (v) => ApiToken.decode(v));
    return all.map((r) => ({ key: r.key, revision: r.revision, rec: r.value })).sort((a, b) => a.rec.createdAtMs - b.rec.createdAtMs);
  }

  /** Creates a token; the value is returned once and never stored. */
  async create(opts: { name: string; userId: string; scope: TokenScope }, now = Date.now()): Promise<{ token: string; info: TokenInfo }> {
    const rec: ApiToken = {
      id: randomUUID(),
      name: opts.name,
      userId: opts.userId,
      scope: opts.scope === 'operator' ? Scope.SCOPE_OPERATOR : Scope.SCOPE_USER,
      createdAtMs: now,
      revokedAtMs: 0,
    };
    const token = newTokenValue();
    await this.b.kv.create(hashToken(token), ApiToken.encode(rec).finish());
    return { token, info: tokenInfo(rec) };
  }

  /** Revokes the token under `key` (compare-and-set); false when it is missing or already revoked. */
  async revoke(key: string, now = Date.now()): Promise<boolean> {
    const cur = await this.byHash(key);
    if (!cur || cur.rec.revokedAtMs > 0) return false;
    await this.b.kv.update(key, ApiToken.encode({ ...cur.rec, revokedAtMs: now }).finish(), cur.revision);
    return true;
  }

  /** Revokes every active token `pick` selects; returns how many. */
  async revokeWhere(pick: (t: TokenInfo) => boolean, now = Date.now()): Promise<number> {
    let n = 0;
    for (const t of await this.list()) {
      if (t.rec.revokedAtMs === 0 && pick(tokenInfo(t.rec)) && (await this.revoke(t.key, now))) n += 1;
    }
    return n;
  }

  /**
   * Replaces the token under `key` with a new value of the same name, user and scope.
   * The old one is revoked first (compare-and-set), so two rotations cannot both succeed
   * and at no moment do both tokens work. Throws TokenError.
   */
  async rotate(key: string, now = Date.now()): Promise<{ token: string; info: TokenInfo; replaced: TokenInfo }> {
    const cur = await this.byHash(key);
    if (!cur) throw new TokenError('not_found', 'invalid API token');
    if (cur.rec.revokedAtMs > 0) throw new TokenError('revoked', 'this API token was already revoked or rotated');
    try {
      await this.b.kv.update(key, ApiToken.encode({ ...cur.rec, revokedAtMs: now }).finish(), cur.revision);
    } catch (err) {
      throw new TokenError('conflict', 'the token changed while rotating it (rotated twice?)', { cause: err });
    }
    const token = newTokenValue();
    const rec: ApiToken = { ...cur.rec, id: randomUUID(), createdAtMs: now, revokedAtMs: 0 };
    await this.b.kv.create(hashToken(token), ApiToken.encode(rec).finish());
    return { token, info: tokenInfo(rec), replaced: tokenInfo(cur.rec) };
  }
}
