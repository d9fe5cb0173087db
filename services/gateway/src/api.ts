// The user and operator API behind the web UI (JSON over HTTPS, bearer token):
//   GET  /v1/me                              who am I (user, scope, token name)
//   POST /v1/me/token/rotate                 new token for this one; the old one stops working now
//   GET  /v1/approvals[?status=pending]      mine (operators: everyone's)
//   POST /v1/approvals/<id>/approve|deny     {"reason"?: "..."}
//   GET|DELETE /v1/conversations…, DELETE /v1/memory   my conversations and memory (conversations.ts)
// Operator scope only:
//   GET  /v1/admin/skills                    installed skills, requested and granted permissions
//   GET  /v1/admin/secrets                   vault secret names and bindings (never values; via egress)
//   GET  /v1/admin/users                     users with their tokens and paired identities
//   POST /v1/admin/tokens/<id>/revoke
//   GET  /v1/admin/pairings                  pending codes and approved pairings
//   POST /v1/admin/pairings/<CODE>/approve   {"user": "alice"}
//   POST /v1/admin/pairings/<CODE>/deny
//   POST /v1/admin/pairings/unpair           {"channel": "telegram", "account": "123"}
//   GET  /v1/admin/audit?limit=&before=      recent egress decisions (secret names, reasons)
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TalonError } from '@talon/kit';
import { requireOperator, type Principal, type TokenStore } from './auth.ts';
import type { ConversationsApi } from './conversations.ts';
import type { EgressApi } from './egress-api.ts';
import { readJson, sendJson } from './guard.ts';
import type { ApprovalStore } from './stores/approvals.ts';
import type { AuditReader } from './stores/audit.ts';
import { displayCode, type PairingStore } from './stores/pairing.ts';
import type { SkillCatalog } from './stores/skills.ts';
import { USER_ID, type UserDirectory } from './stores/users.ts';

export interface ApiDeps {
  tokens: TokenStore;
  approvals: ApprovalStore;
  pairings: PairingStore;
  users: UserDirectory;
  skills: SkillCatalog;
  audit: AuditReader;
  egress: Pick<EgressApi, 'secretNames'>;
  maxBodyBytes: number;
  /** The caller's conversations and memory, answered by an orchestrator over NATS. */
  conversations?: Pick<ConversationsApi, 'route'>;
}

const SMALL_BODY = 16 * 1024;

function field(body: unknown, name: string): unknown {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>)[name] : undefined;
}

function intParam(url: URL, name: string, def: number, min: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return def;
  if (!/^\d{1,9}$/.test(raw)) throw new TalonError('invalid_argument', `${name} must be an integer`);
  return Math.min(max, Math.max(min, Number(raw)));
}

export class Api {
  private readonly d: ApiDeps;
  constructor(deps: ApiDeps) {
    this.d = deps;
  }

  /** Handles /v1/me, /v1/approvals and /v1/admin routes; false when the path is not one of them. */
  async route(req: IncomingMessage, res: ServerResponse, url: URL, p: Principal): Promise<boolean> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const post = () => {
      if (method !== 'POST') throw new TalonError('method_not_allowed', `use POST for ${path}`);
    };
    const get = () => {
      if (method !== 'GET') throw new TalonError('method_not_allowed', `use GET for ${path}`);
    };

    if (path === '/v1/me') {
      get();
      sendJson(res, 200, { user: p.userId, scope: p.scope, token: { id: p.tokenId, name: p.tokenName } });
      return true;
    }
    if (path === '/v1/me/token/rotate') {
      post();
      await readJson(req, SMALL_BODY);
      const r = await this.d.tokens.rotate(p);
      sendJson(res, 200, { token: r.token, info: r.info, note: 'the previous token no longer works; this one is shown only now' });
      return true;
    }
    if (path === '/v1/approvals') {
      get();
      const status = url.searchParams.get('status') ?? undefined;
      if (status !== undefined && !['pending', 'approved', 'denied', 'expired'].includes(status)) {
        throw new TalonError('invalid_argument', 'status must be pending, approved, denied or expired');
      }
      sendJson(res, 200, { approvals: await this.d.approvals.list(p, status ? { status } : {}) });
      return true;
    }
    let m = /^\/v1\/approvals\/([^/]+)\/(approve|deny)$/.exec(path);
    if (m) {
      post();
      const body = await readJson(req, SMALL_BODY);
      const reason = field(body, 'reason');
      if (reason !== undefined && typeof reason !== 'string') throw new TalonError('invalid_argument', 'reason must be a string');
      const v = await this.d.approvals.decide(p, decodeURIComponent(m[1]!), m[2] === 'approve', (reason as string | undefined) ?? '');
      sendJson(res, 200, { approval: v });
      return true;
    }
    if (this.d.conversations && (await this.d.conversations.route(req, res, url, p))) return true;
    if (!path.startsWith('/v1/admin/')) return false;

    // Everything below is for operators; a user token gets 403 before any lookup.
    requireOperator(p);
    if (path === '/v1/admin/skills') {
      get();
      sendJson(res, 200, { skills: await this.d.skills.list() });
      return true;
    }
    if (path === '/v1/admin/secrets') {
      get();
      const secrets = await this.d.egress.secretNames();
      sendJson(res, 200, {
        secrets: secrets.map((s) => ({
          name: s.name,
          version: s.version,
          hosts: s.hosts,
          principals: s.principals,
          placement: s.placement,
          createdAtMs: s.createdAtMs,
          expiresAtMs: s.expiresAtMs,
        })),
      });
      return true;
    }
    if (path === '/v1/admin/users') {
      get();
      const [users, tokens, paired] = await Promise.all([this.d.users.list(), this.d.tokens.list(), this.d.pairings.paired()]);
      const ids = new Set([...users.map((u) => u.id), ...tokens.map((t) => t.userId), ...paired.map((x) => x.userId)]);
      const out = [...ids].sort().map((id) => {
        const u = users.find((x) => x.id === id);
        return {
          id,
          displayName: u?.displayName ?? '',
          registered: u !== undefined,
          disabledAtMs: u?.disabledAtMs ?? 0,
          tokens: tokens.filter((t) => t.userId === id),
          identities: paired
            .filter((x) => x.userId === id)
            .map((x) => ({ channel: x.channel, account: x.account, displayName: x.displayName })),
        };
      });
      sendJson(res, 200, { users: out });
      return true;
    }
    m = /^\/v1\/admin\/tokens\/([0-9a-f-]{36})\/revoke$/.exec(path);
    if (m) {
      post();
      await readJson(req, SMALL_BODY);
      if (!(await this.d.tokens.revoke(m[1]!))) throw new TalonError('not_found', `no active token ${m[1]}`);
      sendJson(res, 200, { revoked: m[1] });
      return true;
    }
    if (path === '/v1/admin/pairings') {
      get();
      const [pending, paired] = await Promise.all([this.d.pairings.pending(), this.d.pairings.paired()]);
      sendJson(res, 200, { pending, paired });
      return true;
    }
    m = /^\/v1\/admin\/pairings\/([A-Za-z0-9-]{8,9})\/(approve|deny)$/.exec(path);
    if (m) {
      post();
      const body = await readJson(req, SMALL_BODY);
      if (m[2] === 'deny') {
        await this.d.pairings.deny(m[1]!);
        sendJson(res, 200, { denied: m[1] });
        return true;
      }
      const user = field(body, 'user');
      if (typeof user !== 'string' || !USER_ID.test(user))
        throw new TalonError('invalid_argument', 'user must be a Talon user id (a-z, 0-9, . _ -)');
      const r = await this.d.pairings.approve(m[1]!, user, `token:${p.tokenId}`);
      sendJson(res, 200, {
        paired: {
          channel: r.pairing.identity?.channel,
          account: r.pairing.identity?.account,
          user: r.pairing.userId,
          code: displayCode(r.pairing.code),
        },
      });
      return true;
    }
    if (path === '/v1/admin/pairings/unpair') {
      post();
      const body = await readJson(req, SMALL_BODY);
      const channel = field(body, 'channel');
      const account = field(body, 'account');
      if (
        typeof channel !== 'string' ||
        typeof account !== 'string' ||
        !/^[a-z]{1,16}$/.test(channel) ||
        !/^[A-Za-z0-9_.-]{1,129}$/.test(account)
      ) {
        throw new TalonError('invalid_argument', 'channel and account are required');
      }
      if (!(await this.d.pairings.unpair(channel, account))) throw new TalonError('not_found', `no pairing for ${channel} ${account}`);
      sendJson(res, 200, { unpaired: { channel, account } });
      return true;
    }
    if (path === '/v1/admin/audit') {
      get();
      const limit = intParam(url, 'limit', 50, 1, 200);
      const before = intParam(url, 'before', 0, 0, 1e9);
      sendJson(res, 200, await this.d.audit.egressDecisions(limit, before));
      return true;
    }
    throw new TalonError('not_found', `no route for ${method} ${path}`);
  }
}
