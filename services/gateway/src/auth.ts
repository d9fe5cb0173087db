// API token authentication. Tokens arrive only in the Authorization header (or a
// WebSocket's first message / subprotocol), never in a URL; the gateway stores
// and looks up only their SHA-256. Revocation and rotation take effect on the
// very next request: nothing is cached.
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV } from '@nats-io/kv';
import { KV_BUCKETS, PermissionDenied, TalonError, Unauthenticated, type NatsConnection, openDirectKv } from '@talon/kit';
import { ApiToken, Scope } from '@talon/proto';

export const TOKEN_PATTERN = /^talon_pat_[0-9a-f]{64}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newTokenValue(): string {
  return `talon_pat_${randomBytes(32).toString('hex')}`;
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
  /** SHA-256 of the token (rate-limit key; never the token). */
  tokenHash: string;
}

export interface TokenView {
  id: string;
  name: string;
  userId: string;
  scope: 'user' | 'operator';
  createdAtMs: number;
  revokedAtMs: number;
}

/** Refused before any lookup: the string cannot be a Talon token. */
export class MalformedToken extends Unauthenticated {
  constructor() {
    super('invalid API token');
    this.name = 'MalformedToken';
  }
}

function scopeName(s: Scope): 'user' | 'operator' {
  return s === Scope.SCOPE_OPERATOR ? 'operator' : 'user';
}

function view(rec: ApiToken): TokenView {
  return {
    id: rec.id,
    name: rec.name,
    userId: rec.userId,
    scope: scopeName(rec.scope),
    createdAtMs: rec.createdAtMs,
    revokedAtMs: rec.revokedAtMs,
  };
}

export function requireOperator(p: Principal): void {
  if (p.scope !== 'operator') {
    throw new PermissionDenied('this endpoint needs an operator token (talon token create --name NAME --scope operator)');
  }
}

export class TokenStore {
  private kv: KV | undefined;
  private jsm: JetStreamManager | undefined;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(): Promise<void> {
    this.kv = await openDirectKv(this.nc, KV_BUCKETS.tokens);
    this.jsm = await jetstreamManager(this.nc, { checkAPI: false });
  }

  /** Returns the principal of a valid, unrevoked token or throws Unauthenticated. */
  async authenticate(header: string | undefined): Promise<Principal> {
    const token = bearerToken(header);
    if (!token) throw new Unauthenticated('send Authorization: Bearer <token> (create one with `talon token create --name NAME`)');
    return this.authenticateToken(token);
  }

  async authenticateToken(token: string): Promise<Principal> {
    if (!TOKEN_PATTERN.test(token)) throw new MalformedToken();
    const hash = hashToken(token);
    let entry;
    try {
      entry = await this.kv!.get(hash);
    } catch (err) {
      throw new TalonError('unavailable', 'token store unavailable; try again', { cause: err });
    }
    // The key is the hash; compare it in constant time anyway so no lookup quirk can match a near miss.
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0 || entry.key.length !== hash.length) {
      throw new Unauthenticated('invalid API token');
    }
    if (!timingSafeEqual(Buffer.from(entry.key), Buffer.from(hash))) throw new Unauthenticated('invalid API token');
    const rec = ApiToken.decode(entry.value);
    if (rec.revokedAtMs > 0) throw new Unauthenticated('this API token was revoked or rotated; use its replacement or create a new one');
    return { userId: rec.userId, tokenId: rec.id, tokenName: rec.name, scope: scopeName(rec.scope), tokenHash: hash };
  }

  private async keys(): Promise<string[]> {
    const prefix = `$KV.${KV_BUCKETS.tokens}.`;
    const info = await this.jsm!.streams.info(`KV_${KV_BUCKETS.tokens}`, { subjects_filter: `${prefix}>` });
    return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
  }

  private async records(): Promise<Array<{ key: string; revision: number; rec: ApiToken }>> {
    const out: Array<{ key: string; revision: number; rec: ApiToken }> = [];
    for (const key of await this.keys()) {
      const e = await this.kv!.get(key);
      if (e && e.operation === 'PUT' && e.value.length > 0) out.push({ key, revision: e.revision, rec: ApiToken.decode(e.value) });
    }
    return out.sort((a, b) => a.rec.createdAtMs - b.rec.createdAtMs);
  }

  async list(): Promise<TokenView[]> {
    return (await this.records()).map((r) => view(r.rec));
  }

  /** Revokes one token by id; false when there is no active token with that id. */
  async revoke(id: string): Promise<boolean> {
    for (const r of await this.records()) {
      if (r.rec.id !== id || r.rec.revokedAtMs > 0) continue;
      await this.kv!.update(r.key, ApiToken.encode({ ...r.rec, revokedAtMs: Date.now() }).finish(), r.revision);
      return true;
    }
    return false;
  }

  /**
   * Issues a replacement for the caller's token (same name, user and scope) and
   * revokes the old one in the same step: the old token fails from the next request on.
   */
  async rotate(p: Principal): Promise<{ token: string; info: TokenView }> {
    const entry = await this.kv!.get(p.tokenHash);
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) throw new Unauthenticated('invalid API token');
    const old = ApiToken.decode(entry.value);
    if (old.revokedAtMs > 0) throw new Unauthenticated('this API token was already revoked or rotated');
    // Revoke first (compare-and-set): two concurrent rotations cannot both succeed.
    try {
      await this.kv!.update(p.tokenHash, ApiToken.encode({ ...old, revokedAtMs: Date.now() }).finish(), entry.revision);
    } catch (err) {
      throw new TalonError('conflict', 'the token changed while rotating it (rotated twice?); sign in again', { cause: err });
    }
    const token = newTokenValue();
    const rec: ApiToken = { ...old, id: randomUUID(), createdAtMs: Date.now(), revokedAtMs: 0 };
    await this.kv!.create(hashToken(token), ApiToken.encode(rec).finish());
    return { token, info: view(rec) };
  }
}
