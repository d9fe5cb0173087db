// The vault's audit trail. A Resolve may release a value only after its audit row
// is committed, so writes are on the request path. Group commit keeps that cheap
// under load: records arriving while an insert is in flight are written together
// by the next multi-row insert, and each caller resumes only once its own row is
// committed. A lone caller never waits for a timer.
//
// A record may be conditional on the epoch (`ifEpoch`): it is written only if
// vault.state.epoch still has that value in the insert's snapshot. Resolve uses
// this to decide on a cached row and audit in one round trip: every secret change
// bumps the epoch in its own transaction, so "written" proves the cached row was
// current when the audit row was committed.
import type { Pool } from '@talon/kit/db';
import type { AuditRecord } from '@talon/proto';

export interface AuditEntry {
  caller: string;
  action: string;
  owner?: string;
  secretName?: string;
  /** host:port for Resolve. */
  host?: string;
  principal?: string;
  allowed: boolean;
  /** Stable reason: allowed, vault_sealed, not_found, host_not_bound, ... Never a value. */
  reason: string;
  requestId?: string;
}

const MAX_BATCH = 256;
const MAX_FIELD = 256;

function clip(s: string | undefined): string {
  const v = s ?? '';
  return v.length > MAX_FIELD ? `${v.slice(0, MAX_FIELD - 3)}...` : v;
}

export interface AuditOutcome {
  /** False only for a conditional record whose epoch had moved (nothing was written). */
  written: boolean;
}

interface Pending {
  entry: AuditEntry;
  ifEpoch: number | null;
  done: (err: unknown, written?: boolean) => void;
}

export class AuditWriter {
  private readonly pool: Pool;
  private queue: Pending[] = [];
  private flushing = false;

  constructor(pool: Pool) {
    this.pool = pool;
  }

  /** Resolves once the record is committed (or skipped, see `ifEpoch`); rejects if it could not be written. */
  record(entry: AuditEntry, opts: { ifEpoch?: number } = {}): Promise<AuditOutcome> {
    const ifEpoch = opts.ifEpoch ?? null;
    return new Promise<AuditOutcome>((resolve, reject) => {
      this.queue.push({
        entry,
        ifEpoch,
        done: (err, written) => (err === undefined ? resolve({ written: written === true }) : reject(err)),
      });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          const written = await this.insert(batch);
          batch.forEach((p, i) => p.done(undefined, written[i]));
        } catch (err) {
          for (const p of batch) p.done(err ?? new Error('audit insert failed'));
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Writes a batch; returns, per entry, whether it was written. */
  private async insert(batch: readonly Pending[]): Promise<boolean[]> {
    const cols = `caller, action, owner, secret_name, host, principal, allowed, reason, request_id`;
    if (batch.length === 1) {
      // The common case, kept to the cheapest statement (PGlite plans every query afresh).
      const p = batch[0]!;
      const e = p.entry;
      const v = [
        clip(e.caller),
        clip(e.action),
        clip(e.owner),
        clip(e.secretName),
        clip(e.host),
        clip(e.principal),
        e.allowed,
        clip(e.reason),
        clip(e.requestId),
      ];
      if (p.ifEpoch === null) {
        await this.pool.query(`insert into vault.audit_log (${cols}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, v);
        return [true];
      }
      const r = await this.pool.query(
        `insert into vault.audit_log (${cols}) select $1, $2, $3, $4, $5, $6, $7, $8, $9 from vault.state where id = 1 and epoch = $10 returning id`,
        [...v, p.ifEpoch],
      );
      return [(r.rowCount ?? 0) > 0];
    }
    const col = (k: Exclude<keyof AuditEntry, 'allowed'>) => batch.map((p) => clip(p.entry[k]));
    const { rows } = await this.pool.query<{ epoch: string }>(
      `with e as (select epoch from vault.state where id = 1),
            ins as (
              insert into vault.audit_log (${cols})
              select u.caller, u.action, u.owner, u.secret_name, u.host, u.principal, u.allowed, u.reason, u.request_id
                from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], $8::text[], $9::text[], $10::bigint[])
                     as u(caller, action, owner, secret_name, host, principal, allowed, reason, request_id, if_epoch)
               where u.if_epoch is null or u.if_epoch = (select epoch from e)
              returning 1)
       select (select epoch from e) as epoch, (select count(*) from ins) as n`,
      [
        col('caller'),
        col('action'),
        col('owner'),
        col('secretName'),
        col('host'),
        col('principal'),
        batch.map((p) => p.entry.allowed),
        col('reason'),
        col('requestId'),
        batch.map((p) => p.ifEpoch),
      ],
    );
    const epoch = Number(rows[0]?.epoch ?? NaN);
    return batch.map((p) => p.ifEpoch === null || p.ifEpoch === epoch);
  }

  async recent(limit: number): Promise<AuditRecord[]> {
    const { rows } = await this.pool.query<{
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
         from vault.audit_log order by id desc limit $1`,
      [limit],
    );
    return rows.map((r) => ({
      atMs: Number(r.ms),
      caller: r.caller,
      action: r.action,
      secretName: r.secret_name,
      host: r.host,
      principal: r.principal,
      allowed: r.allowed,
      reason: r.reason,
      requestId: r.request_id,
    }));
  }

  /** Deletes records older than `days`; returns how many. */
  async prune(days: number): Promise<number> {
    const r = await this.pool.query(`delete from vault.audit_log where at < now() - make_interval(days => $1)`, [days]);
    return r.rowCount ?? 0;
  }
}
