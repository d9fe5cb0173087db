// The filters of `talon vault audit` and `talon egress audit`, defined once:
// --since/--until (a duration back from now, like 90s, 15m, 2h, 7d, or an ISO
// date/time), --principal, --decision allow|deny, --secret NAME and --limit N;
// `talon egress audit` also takes --user ID (the end user a decision was made for).
// Parsing and matching are pure; the commands only print.
import type { Command } from 'commander';
import { isSecretName, SECRET_NAME_RULE } from '@talon/kit/contracts';
import { isUserId, USER_ID_RULE } from '@talon/records/identity';
import type { EgressDecision } from '@talon/proto';
import { CliError } from './context.ts';

export type Decision = 'allow' | 'deny';

export interface AuditFilter {
  /** ms since the epoch; 0: no bound. `since` is inclusive, `until` exclusive. */
  sinceMs: number;
  untilMs: number;
  principal: string;
  decision: '' | Decision;
  secret: string;
  /** The end user an egress decision was made for ('' = any); egress only. */
  user: string;
  limit: number;
}

export interface AuditFilterFlags {
  since?: string;
  until?: string;
  principal?: string;
  decision?: string;
  secret?: string;
  user?: string;
  limit?: string;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A point in time from `90s`, `15m`, `2h`, `7d`, `1w` (that long before `now`) or an ISO 8601 date/time. Pure. */
export function parseTime(flag: string, text: string, now: number): number {
  const t = text.trim();
  const d = /^(\d{1,9})\s*([smhdw])$/.exec(t);
  if (d) return now - Number(d[1]) * UNIT_MS[d[2]!]!;
  // A date or date-time (a bare date is midnight UTC); not free-form text Date.parse would guess at.
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(t)) {
    const ms = Date.parse(t.replace(' ', 'T'));
    if (Number.isFinite(ms)) return ms;
  }
  throw new CliError(
    `${flag} takes a duration back from now (90s, 15m, 2h, 7d, 1w) or an ISO time (2025-01-31 or 2025-01-31T14:00:00Z); got ${JSON.stringify(t.slice(0, 40))}`,
  );
}

/** Checks the flags and turns them into a filter. Pure; throws CliError saying what to pass instead. */
export function parseAuditFilter(o: AuditFilterFlags, now: number, limits: { def: number; max: number }): AuditFilter {
  const sinceMs = o.since !== undefined ? parseTime('--since', o.since, now) : 0;
  const untilMs = o.until !== undefined ? parseTime('--until', o.until, now) : 0;
  if (sinceMs > 0 && untilMs > 0 && untilMs <= sinceMs) throw new CliError('--until must be later than --since');
  let decision: AuditFilter['decision'] = '';
  if (o.decision !== undefined) {
    const v = o.decision.toLowerCase();
    if (v === 'allow' || v === 'allowed') decision = 'allow';
    else if (v === 'deny' || v === 'denied' || v === 'refused') decision = 'deny';
    else throw new CliError(`--decision takes allow or deny; got ${JSON.stringify(o.decision.slice(0, 20))}`);
  }
  const principal = o.principal ?? '';
  if (o.principal !== undefined && !/^[A-Za-z0-9][A-Za-z0-9:@._/-]{0,127}$/.test(principal)) {
    throw new CliError('--principal takes a principal such as orchestrator, gateway, admin or skill:<name>@<version>');
  }
  const secret = o.secret ?? '';
  if (o.secret !== undefined && !isSecretName(secret)) throw new CliError(`--secret takes a secret name (${SECRET_NAME_RULE})`);
  const user = o.user ?? '';
  if (o.user !== undefined && !isUserId(user)) throw new CliError(`--user takes a Talon user id (${USER_ID_RULE}; see talon users list)`);
  let limit = limits.def;
  if (o.limit !== undefined) {
    limit = Number(o.limit);
    if (!/^\d+$/.test(o.limit) || limit < 1 || limit > limits.max) throw new CliError(`--limit must be an integer from 1 to ${limits.max}`);
  }
  return { sinceMs, untilMs, principal, decision, secret, user, limit };
}

/** Adds the shared filter options to an audit command. */
export function auditFilterOptions(cmd: Command, limits: { def: number; max: number }): Command {
  return cmd
    .option('--since <time>', 'only records from then on: a duration back from now (90s, 15m, 2h, 7d, 1w) or an ISO time')
    .option('--until <time>', 'only records before then (same forms as --since)')
    .option('--principal <id>', 'only this principal or caller (orchestrator, gateway, admin, skill:<name>@<version>)')
    .option('--decision <allow|deny>', 'only allowed or only refused records')
    .option('--secret <name>', 'only records that name this secret (a name; values are never recorded)')
    .option('--limit <n>', `at most this many records, newest first (1-${limits.max})`, String(limits.def));
}

/** Whether an egress decision passes the filter (`limit` is the caller's). Pure. */
export function decisionMatches(f: AuditFilter, d: EgressDecision): boolean {
  const at = Number(d.atMs);
  if (f.sinceMs > 0 && at < f.sinceMs) return false;
  if (f.untilMs > 0 && at >= f.untilMs) return false;
  if (f.principal !== '' && d.principal !== f.principal) return false;
  if (f.decision !== '' && d.allowed !== (f.decision === 'allow')) return false;
  if (f.secret !== '' && !d.secrets.includes(f.secret) && !d.findings.includes(`secret:${f.secret}`)) return false;
  if (f.user !== '' && d.user !== f.user) return false;
  return true;
}

/** One line of `talon egress audit`: who (and for which user), what, the decision and the rule behind it. Names only, never values. Pure. */
export function formatDecision(d: EgressDecision): string {
  return [
    new Date(Number(d.atMs)).toISOString(),
    d.allowed ? 'ALLOW' : 'DENY ',
    `principal=${d.principal}`,
    d.user ? `user=${d.user}` : '',
    `${d.method} ${d.host}${d.port ? `:${d.port}` : ''}${d.path}`,
    `reason=${d.reason}`,
    d.findings.length > 0 ? `rules=${d.findings.join(',')}` : '',
    d.secrets.length > 0 ? `secrets=${d.secrets.join(',')}` : '',
    d.status ? `status=${d.status}` : '',
    d.id ? `id=${d.id}` : '',
  ]
    .filter((x) => x !== '')
    .join('  ');
}
