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
//
// The rows form one hash chain (packages/kit/src/audit-chain.ts), whichever
// replica writes them: an insert locks the chain head row (vault.audit_chain_head)
// for update, links the batch to the head's hash, inserts it and moves the head,
// all in one transaction, so writers are serialised on the head and ids follow the
// chain. The epoch of conditional records is read in that same transaction.
import { GENESIS_HASH, linkHash, vaultAuditContent } from '@talon/kit/audit-chain';
import type { Pool } from '@talon/kit/db';
import type { AuditChainHead, AuditChainRecord, AuditRecord } from '@talon/proto';
import { queryAudit } from './audit-query.ts';

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

  /** Writes a batch in one transaction, linked onto the chain; returns, per entry, whether it was written. */
  private async insert(batch: readonly Pending[]): Promise<boolean[]> {
    const c = await this.pool.connect();
    try {
      await c.query('begin');
      // `at` is now() (fixed for the transaction) to the millisecond, so the hashed value is the stored one.
      const { rows } = await c.query<{ hash: string; ms: string; epoch: string }>(
        `select h.hash, (extract(epoch from date_trunc('milliseconds', now())) * 1000)::bigint as ms,
                (select epoch from vault.state where id = 1) as epoch
           from vault.audit_chain_head h where h.id = 1 for update`,
      );
      const head = rows[0];
      if (!head) throw new Error('vault.audit_chain_head is missing its row; the vault schema is damaged');
      const epoch = Number(head.epoch);
      const written = batch.map((p) => p.ifEpoch === null || p.ifEpoch === epoch);
      const entries = batch.filter((_, i) => written[i]).map((p) => p.entry);
      if (entries.length > 0) {
        const atMs = Number(head.ms);
        let prev = head.hash || GENESIS_HASH;
        const rowsOut = entries.map((e) => {
          const r = {
            atMs,
            caller: clip(e.caller),
            action: clip(e.action),
            owner: clip(e.owner),
            secretName: clip(e.secretName),
            host: clip(e.host),
            principal: clip(e.principal),
            allowed: e.allowed,
            reason: clip(e.reason),
            requestId: clip(e.requestId),
          };
          const hash = linkHash(prev, vaultAuditContent(r));
          const out = { ...r, prev, hash };
          prev = hash;
          return out;
        });
        const col = <K extends keyof (typeof rowsOut)[number]>(k: K) => rowsOut.map((r) => r[k]);
        // Ids are assigned in `ord` order, which is chain order; the head moves in the same statement.
        await c.query(
          `with ins as (
             insert into vault.audit_log (at, caller, action, owner, secret_name, host, principal, allowed, reason, request_id, prev_hash, hash)
             select date_trunc('milliseconds', now()),
                    u.caller, u.action, u.owner, u.secret_name, u.host, u.principal, u.allowed, u.reason, u.request_id, u.prev_hash, u.hash
               from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[], $8::text[], $9::text[], $10::text[], $11::text[])
                    with ordinality as u(caller, action, owner, secret_name, host, principal, allowed, reason, request_id, prev_hash, hash, ord)
              order by u.ord
             returning id)
           update vault.audit_chain_head set last_id = (select max(id) from ins), hash = $12 where id = 1`,
          [
            col('caller'),
            col('action'),
            col('owner'),
            col('secretName'),
            col('host'),
            col('principal'),
            col('allowed'),
            col('reason'),
            col('requestId'),
            col('prev'),
            col('hash'),
            prev,
          ],
        );
      }
      await c.query('commit');
      return written;
    } catch (err) {
      await c.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  /** The newest records, newest first (the unfiltered audit query). */
  recent(limit: number): Promise<AuditRecord[]> {
    return queryAudit(this.pool, { limit, sinceMs: 0, untilMs: 0, principal: '', decision: '', secretName: '' });
  }

  /**
   * Deletes records older than `days`; returns how many. Deletes a prefix of the
   * chain (every id up to the newest old row) and records the newest deleted row's
   * hash as the anchor the oldest kept row must link to.
   */
  async prune(days: number): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `with d as (
         delete from vault.audit_log
          where id <= (select max(id) from vault.audit_log where at < now() - make_interval(days => $1))
         returning id, hash),
       newest as (select id, hash from d order by id desc limit 1),
       moved as (
         update vault.audit_chain_head h set anchor_id = newest.id, anchor_hash = newest.hash
           from newest where h.id = 1 and newest.id > h.anchor_id
         returning 1)
       select (select count(*) from d)::int as n, (select count(*) from moved) as moved`,
      [days],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * For `talon audit verify`: rows after `afterId`, oldest first, up to the chain
   * head, with the head, all read in one statement (one snapshot), so a row being
   * written is either in both or in neither.
   */
  async chainPage(afterId: number, limit: number): Promise<{ head: AuditChainHead; records: AuditChainRecord[] }> {
    const { rows } = await this.pool.query<{
      last_id: string;
      head_hash: string;
      anchor_id: string;
      anchor_hash: string;
      id: string | null;
      ms: string;
      caller: string;
      action: string;
      owner: string;
      secret_name: string;
      host: string;
      principal: string;
      allowed: boolean;
      reason: string;
      request_id: string;
      prev_hash: string;
      hash: string;
    }>(
      `select h.last_id, h.hash as head_hash, h.anchor_id, h.anchor_hash, a.*
         from vault.audit_chain_head h
         left join lateral (
           select id, (extract(epoch from at) * 1000)::bigint as ms, caller, action, owner, secret_name, host, principal,
                  allowed, reason, request_id, prev_hash, hash
             from vault.audit_log where id > $1 and id <= h.last_id order by id limit $2) a on true
        where h.id = 1
        order by a.id`,
      [afterId, limit],
    );
    const first = rows[0];
    if (!first) throw new Error('vault.audit_chain_head is missing its row; the vault schema is damaged');
    return {
      head: { lastId: Number(first.last_id), hash: first.head_hash, anchorId: Number(first.anchor_id), anchorHash: first.anchor_hash },
      records: rows
        .filter((r) => r.id !== null)
        .map((r) => ({
          id: Number(r.id),
          atMs: Number(r.ms),
          caller: r.caller,
          action: r.action,
          owner: r.owner,
          secretName: r.secret_name,
          host: r.host,
          principal: r.principal,
          allowed: r.allowed,
          reason: r.reason,
          requestId: r.request_id,
          prevHash: r.prev_hash,
          hash: r.hash,
        })),
    };
  }
}
