// API token authentication. Tokens arrive only in the Authorization header (or a
// WebSocket's first message / subprotocol), never in a URL; the gateway stores
// and looks up only their SHA-256. Revocation and rotation take effect on the
// very next request: nothing is cached.
import { timingSafeEqual } from 'node:crypto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { hashToken, newTokenValue, TOKEN_PATTERN } from '@talon/kit/contracts';
import { PermissionDenied, TalonError, Unauthenticated } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import { TokenError, tokenInfo, Tokens, type TokenInfo } from '@talon/records/identity';

// The token format and hash are wire contracts (packages/kit/src/contracts.ts); the
// records are @talon/records/identity's.
export { hashToken, newTokenValue, TOKEN_PATTERN };

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
  /** SHA-256 of the token (rate-limit key; never the token). */
  tokenHash: string;
}

export type TokenView = TokenInfo;

/** Why an authentication failed, as logged and counted: a bounded set, never the credential. */
export type AuthFailureReason = 'missing_token' | 'malformed_token' | 'unknown_token' | 'revoked_token';

/** A failed authentication with its reason (the message is what the client is told). */
export class AuthFailed extends Unauthenticated {
  readonly reason: AuthFailureReason;
  constructor(reason: AuthFailureReason, message: string) {
    super(message);
    this.name = 'AuthFailed';
    this.reason = reason;
  }
}

/** Refused before any lookup: the string cannot be a Talon token. */
export class MalformedToken extends AuthFailed {
  constructor() {
    super('malformed_token', 'invalid API token');
    this.name = 'MalformedToken';
  }
}

/** The reason of a failed authentication: AuthFailed's own, else unknown_token. Pure. */
export function authFailureReason(err: Unauthenticated): AuthFailureReason {
  return err instanceof AuthFailed ? err.reason : 'unknown_token';
}

export function requireOperator(p: Principal): void {
  if (p.scope !== 'operator') {
    throw new PermissionDenied('this endpoint needs an operator token (talon token create --name NAME --scope operator)');
  }
}

export class TokenStore {
  private tokens: Tokens | undefined;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<void> {
    this.tokens = await new Tokens(this.nc).open(jsm);
  }

  /** Returns the principal of a valid, unrevoked token or throws Unauthenticated. */
  async authenticate(header: string | undefined): Promise<Principal> {
    const token = bearerToken(header);
    if (!token)
      throw new AuthFailed('missing_token', 'send Authorization: Bearer <token> (create one with `talon token create --name NAME`)');
    return this.authenticateToken(token);
  }

  async authenticateToken(token: string): Promise<Principal> {
    if (!TOKEN_PATTERN.test(token)) throw new MalformedToken();
    const hash = hashToken(token);
    let entry;
    try {
      entry = await this.tokens!.byHash(hash);
    } catch (err) {
      throw new TalonError('unavailable', 'token store unavailable; try again', { cause: err });
    }
    // The key is the hash; compare it in constant time anyway so no lookup quirk can match a near miss.
    if (!entry || entry.key.length !== hash.length) throw new AuthFailed('unknown_token', 'invalid API token');
    if (!timingSafeEqual(Buffer.from(entry.key), Buffer.from(hash))) throw new AuthFailed('unknown_token', 'invalid API token');
    const rec = tokenInfo(entry.rec);
    if (rec.revokedAtMs > 0)
      throw new AuthFailed('revoked_token', 'this API token was revoked or rotated; use its replacement or create a new one');
    return { userId: rec.userId, tokenId: rec.id, tokenName: rec.name, scope: rec.scope, tokenHash: hash };
  }

  async list(): Promise<TokenView[]> {
    return (await this.tokens!.list()).map((r) => tokenInfo(r.rec));
  }

  /** Revokes one token by id; false when there is no active token with that id. */
  async revoke(id: string): Promise<boolean> {
    for (const r of await this.tokens!.list()) {
      if (r.rec.id !== id || r.rec.revokedAtMs > 0) continue;
      return this.tokens!.revoke(r.key);
    }
    return false;
  }

  /**
   * Issues a replacement for the caller's token (same name, user and scope) and
   * revokes the old one in the same step: the old token fails from the next request on.
   */
  async rotate(p: Principal): Promise<{ token: string; info: TokenView }> {
    try {
      const r = await this.tokens!.rotate(p.tokenHash);
      return { token: r.token, info: r.info };
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      if (err.code === 'not_found') throw new Unauthenticated('invalid API token');
      if (err.code === 'revoked') throw new Unauthenticated('this API token was already revoked or rotated');
      throw new TalonError('conflict', 'the token changed while rotating it (rotated twice?); sign in again', { cause: err });
    }
  }
}
