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
import { TalonError } from '@talon/kit/errors';
import { requireOperator, type Principal, type TokenStore } from './auth.ts';
import type { ConversationsApi } from './conversations.ts';
import type { EgressApi } from './egress-api.ts';
import { readJson, sendJson } from './guard.ts';
import type { RoutinesView } from './routines.ts';
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
  /** The caller's routines (talon routines), read-only. */
  routines?: Pick<RoutinesView, 'list'>;
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

type Method = 'GET' | 'POST';

/** One request as a handler sees it; `params` are the groups a pattern route captured. */
export interface RouteCall {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  principal: Principal;
  params: readonly string[];
}

export interface Route {
  method: Method;
  /** The exact path, or a pattern whose capture groups become `params`. */
  path: string | RegExp;
  handle: (call: RouteCall) => Promise<void>;
}

/**
 * The first route whose path matches, with its captured groups; undefined when none
 * does. A path known under another method is refused with method_not_allowed.
 */
export function findRoute(routes: readonly Route[], method: string, path: string): { route: Route; params: string[] } | undefined {
  for (const route of routes) {
    let params: string[];
    if (typeof route.path === 'string') {
      if (route.path !== path) continue;
      params = [];
    } else {
      const m = route.path.exec(path);
      if (!m) continue;
      params = m.slice(1);
    }
    if (method !== route.method) throw new TalonError('method_not_allowed', `use ${route.method} for ${path}`);
    return { route, params };
  }
  return undefined;
}

export class Api {
  private readonly tokens: TokenStore;
  private readonly approvals: ApprovalStore;
  private readonly pairings: PairingStore;
  private readonly users: UserDirectory;
  private readonly skills: SkillCatalog;
  private readonly audit: AuditReader;
  private readonly egress: Pick<EgressApi, 'secretNames'>;
  private readonly conversations: Pick<ConversationsApi, 'route'> | undefined;
  private readonly routines: Pick<RoutinesView, 'list'> | undefined;

  /** Routes for any authenticated caller. */
  readonly userRoutes: readonly Route[] = [
    { method: 'GET', path: '/v1/me', handle: (c) => this.me(c) },
    { method: 'POST', path: '/v1/me/token/rotate', handle: (c) => this.rotateOwnToken(c) },
    { method: 'GET', path: '/v1/approvals', handle: (c) => this.listApprovals(c) },
    { method: 'POST', path: /^\/v1\/approvals\/([^/]+)\/(approve|deny)$/, handle: (c) => this.decideApproval(c) },
    { method: 'GET', path: '/v1/routines', handle: (c) => this.listRoutines(c) },
  ];

  /** Routes under /v1/admin/, for operators only. */
  readonly operatorRoutes: readonly Route[] = [
    { method: 'GET', path: '/v1/admin/skills', handle: (c) => this.listSkills(c) },
    { method: 'GET', path: '/v1/admin/secrets', handle: (c) => this.listSecrets(c) },
    { method: 'GET', path: '/v1/admin/users', handle: (c) => this.listUsers(c) },
    { method: 'POST', path: /^\/v1\/admin\/tokens\/([0-9a-f-]{36})\/revoke$/, handle: (c) => this.revokeToken(c) },
    { method: 'GET', path: '/v1/admin/pairings', handle: (c) => this.listPairings(c) },
    { method: 'POST', path: /^\/v1\/admin\/pairings\/([A-Za-z0-9-]{8,9})\/(approve|deny)$/, handle: (c) => this.decidePairing(c) },
    { method: 'POST', path: '/v1/admin/pairings/unpair', handle: (c) => this.unpair(c) },
    { method: 'GET', path: '/v1/admin/audit', handle: (c) => this.egressAudit(c) },
  ];

  constructor(deps: ApiDeps) {
    this.tokens = deps.tokens;
    this.approvals = deps.approvals;
    this.pairings = deps.pairings;
    this.users = deps.users;
    this.skills = deps.skills;
    this.audit = deps.audit;
    this.egress = deps.egress;
    this.conversations = deps.conversations;
    this.routines = deps.routines;
  }

  /** Handles /v1/me, /v1/approvals and /v1/admin routes; false when the path is not one of them. */
  async route(req: IncomingMessage, res: ServerResponse, url: URL, principal: Principal): Promise<boolean> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const mine = findRoute(this.userRoutes, method, path);
    if (mine) {
      await mine.route.handle({ req, res, url, principal, params: mine.params });
      return true;
    }
    if (this.conversations && (await this.conversations.route(req, res, url, principal))) return true;
    if (!path.startsWith('/v1/admin/')) return false;
    // Everything below is for operators; a user token gets 403 before any lookup.
    requireOperator(principal);
    const admin = findRoute(this.operatorRoutes, method, path);
    if (!admin) throw new TalonError('not_found', `no route for ${method} ${path}`);
    await admin.route.handle({ req, res, url, principal, params: admin.params });
    return true;
  }

  // ---- any caller ---------------------------------------------------------

  private async me({ res, principal: p }: RouteCall): Promise<void> {
    sendJson(res, 200, { user: p.userId, scope: p.scope, token: { id: p.tokenId, name: p.tokenName } });
  }

  private async rotateOwnToken({ req, res, principal }: RouteCall): Promise<void> {
    await readJson(req, SMALL_BODY);
    const r = await this.tokens.rotate(principal);
    sendJson(res, 200, { token: r.token, info: r.info, note: 'the previous token no longer works; this one is shown only now' });
  }

  private async listApprovals({ res, url, principal }: RouteCall): Promise<void> {
    const status = url.searchParams.get('status') ?? undefined;
    if (status !== undefined && !['pending', 'approved', 'denied', 'expired'].includes(status)) {
      throw new TalonError('invalid_argument', 'status must be pending, approved, denied or expired');
    }
    sendJson(res, 200, { approvals: await this.approvals.list(principal, status ? { status } : {}) });
  }

  /** The caller's own routines (operators' too: every user sees the routines that run as them). */
  private async listRoutines({ res, principal }: RouteCall): Promise<void> {
    if (!this.routines) throw new TalonError('not_found', 'routines are not served by this gateway');
    sendJson(res, 200, { routines: await this.routines.list(principal.userId) });
  }

  private async decideApproval({ req, res, principal, params: [id, decision] }: RouteCall): Promise<void> {
    const body = await readJson(req, SMALL_BODY);
    const reason = field(body, 'reason');
    if (reason !== undefined && typeof reason !== 'string') throw new TalonError('invalid_argument', 'reason must be a string');
    const v = await this.approvals.decide(principal, decodeURIComponent(id!), decision === 'approve', (reason as string | undefined) ?? '');
    sendJson(res, 200, { approval: v });
  }

  // ---- operators ----------------------------------------------------------

  private async listSkills({ res }: RouteCall): Promise<void> {
    sendJson(res, 200, { skills: await this.skills.list() });
  }

  private async listSecrets({ res }: RouteCall): Promise<void> {
    const secrets = await this.egress.secretNames();
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
  }

  private async listUsers({ res }: RouteCall): Promise<void> {
    const [users, tokens, paired] = await Promise.all([this.users.list(), this.tokens.list(), this.pairings.paired()]);
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
  }

  private async revokeToken({ req, res, params: [id] }: RouteCall): Promise<void> {
    await readJson(req, SMALL_BODY);
    if (!(await this.tokens.revoke(id!))) throw new TalonError('not_found', `no active token ${id}`);
    sendJson(res, 200, { revoked: id });
  }

  private async listPairings({ res }: RouteCall): Promise<void> {
    const [pending, paired] = await Promise.all([this.pairings.pending(), this.pairings.paired()]);
    sendJson(res, 200, { pending, paired });
  }

  private async decidePairing({ req, res, principal, params: [code, decision] }: RouteCall): Promise<void> {
    const body = await readJson(req, SMALL_BODY);
    if (decision === 'deny') {
      await this.pairings.deny(code!);
      sendJson(res, 200, { denied: code });
      return;
    }
    const user = field(body, 'user');
    if (typeof user !== 'string' || !USER_ID.test(user))
      throw new TalonError('invalid_argument', 'user must be a Talon user id (a-z, 0-9, . _ -)');
    const r = await this.pairings.approve(code!, user, `token:${principal.tokenId}`);
    sendJson(res, 200, {
      paired: {
        channel: r.pairing.identity?.channel,
        account: r.pairing.identity?.account,
        user: r.pairing.userId,
        code: displayCode(r.pairing.code),
      },
    });
  }

  private async unpair({ req, res }: RouteCall): Promise<void> {
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
    if (!(await this.pairings.unpair(channel, account))) throw new TalonError('not_found', `no pairing for ${channel} ${account}`);
    sendJson(res, 200, { unpaired: { channel, account } });
  }

  private async egressAudit({ res, url }: RouteCall): Promise<void> {
    const limit = intParam(url, 'limit', 50, 1, 200);
    const before = intParam(url, 'before', 0, 0, 1e9);
    sendJson(res, 200, await this.audit.egressDecisions(limit, before));
  }
}
