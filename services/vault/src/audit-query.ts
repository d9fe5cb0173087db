// Filtered reads of the vault audit trail for `talon vault audit` (AuditLog with
// since/until/principal/decision/secret): the filter is checked and turned into
// a parameterised WHERE clause here (pure), so the writer (audit.ts) stays as it is.
import type { Pool } from '@talon/kit/db';
import { InvalidArgument } from '@talon/kit/errors';
import { AuditRecord, type AuditLogRequest } from '@talon/proto';

export interface AuditFilter {
  limit: number;
  sinceMs: number;
  untilMs: number;
  principal: string;
  decision: '' | 'allow' | 'deny';
  secretName: string;
}

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;

/** The request's filter, checked. Pure; throws InvalidArgument with what to send instead. */
export function auditFilter(req: AuditLogRequest): AuditFilter {
  const decision = req.decision;
  if (decision !== '' && decision !== 'allow' && decision !== 'deny') throw new InvalidArgument('decision must be allow, deny or empty');
  const sinceMs = Number(req.sinceMs);
  const untilMs = Number(req.untilMs);
  if (!Number.isSafeInteger(sinceMs) || !Number.isSafeInteger(untilMs) || sinceMs < 0 || untilMs < 0) {
    throw new InvalidArgument('since_ms and until_ms are milliseconds since the epoch (0: no bound)');
  }
  if (req.principal.length > 256 || req.secretName.length > 256)
    throw new InvalidArgument('principal and secret_name are at most 256 characters');
  return {
    limit: req.limit > 0 ? Math.min(req.limit, AUDIT_MAX_LIMIT) : AUDIT_DEFAULT_LIMIT,
    sinceMs,
    untilMs,
    principal: req.principal,
    decision,
    secretName: req.secretName,
  };
}

/** True when the request asks for more than the newest `limit` records. Pure. */
export function isFiltered(f: AuditFilter): boolean {
  return f.sinceMs > 0 || f.untilMs > 0 || f.principal !== '' || f.decision !== '' || f.secretName !== '';
}

/** The WHERE clause and its parameters (`$1`…); `limit` is the last parameter. Pure. */
export function auditWhere(f: AuditFilter): { where: string; params: unknown[] } {
  const conds: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (f.sinceMs > 0) conds.push(`at >= to_timestamp(${p(f.sinceMs)}::bigint / 1000.0)`);
  if (f.untilMs > 0) conds.push(`at < to_timestamp(${p(f.untilMs)}::bigint / 1000.0)`);
  if (f.principal !== '') {
    const v = p(f.principal);
    conds.push(`(principal = ${v} or caller = ${v})`);
  }
  if (f.decision !== '') conds.push(`allowed = ${p(f.decision === 'allow')}`);
  if (f.secretName !== '') conds.push(`secret_name = ${p(f.secretName)}`);
  return { where: conds.length > 0 ? `where ${conds.join(' and ')}` : '', params };
}

/** The newest records matching `f`, newest first. */
export async function queryAudit(pool: Pool, f: AuditFilter): Promise<AuditRecord[]> {
  const { where, params } = auditWhere(f);
  const { rows } = await pool.query<{
    ms: string;
    caller: string;
    action: string;
    secret_name: string;
    host: string;
    principal: string;
    allowed: boolean;
    reason: string;
    request_id: string;
  }>(
    `select (extract(epoch from at) * 1000)::bigint as ms, caller, action, secret_name, host, principal, allowed, reason, request_id
       from vault.audit_log ${where} order by id desc limit $${params.length + 1}`,
    [...params, f.limit],
  );
  return rows.map((r) =>
    AuditRecord.fromPartial({
      atMs: Number(r.ms),
      caller: r.caller,
      action: r.action,
      secretName: r.secret_name,
      host: r.host,
      principal: r.principal,
      allowed: r.allowed,
      reason: r.reason,
      requestId: r.request_id,
    }),
  );
}
