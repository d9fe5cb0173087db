// API token authentication. Tokens arrive only in the Authorization header
// (never in a URL); the gateway stores and compares only their SHA-256.
import { createHash } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { KV_BUCKETS, TalonError, Unauthenticated, type NatsConnection } from '@talon/kit';
import { ApiToken, Scope } from '@talon/proto';

export const TOKEN_PATTERN = /^talon_pat_[0-9a-f]{64}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Extracts a bearer token from an Authorization header; undefined when absent or malformed. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

export interface Principal {
  userId: string;
  tokenId: string;
  tokenName: string;
  scope: 'user' | 'operator';
}

export class TokenStore {
  private kv: KV | undefined;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(): Promise<void> {
    this.kv = await new Kvm(this.nc).open(KV_BUCKETS.tokens);
  }

  /** Returns the principal of a valid, unrevoked token or throws Unauthenticated. */
  async authenticate(header: string | undefined): Promise<Principal> {
    const token = bearerToken(header);
    if (!token) throw new Unauthenticated('send Authorization: Bearer <token> (create one with `talon token create --name NAME`)');
    if (!TOKEN_PATTERN.test(token)) throw new Unauthenticated('invalid API token');
    let entry;
    try {
      entry = await this.kv!.get(hashToken(token));
    } catch (err) {
      throw new TalonError('unavailable', 'token store unavailable; try again', { cause: err });
    }
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) throw new Unauthenticated('invalid API token');
    const rec = ApiToken.decode(entry.value);
    if (rec.revokedAtMs > 0) throw new Unauthenticated('this API token was revoked');
    return {
      userId: rec.userId,
      tokenId: rec.id,
      tokenName: rec.name,
      scope: rec.scope === Scope.SCOPE_OPERATOR ? 'operator' : 'user',
    };
  }
}
