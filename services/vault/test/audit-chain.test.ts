// The vault's hash-chained audit against a real PostgreSQL (PGlite on loopback, or
// the native server with TALON_TEST_DATABASE=native): rows written through
// AuditWriter verify; a row edited, deleted or inserted in SQL behind the vault's
// back is named by the verifier; two writers on one database (two replicas) still
// make one intact chain; retention keeps the chain verifiable from its anchor.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { linkHash, vaultAuditContent, verifyVaultTrail } from '@talon/kit/audit-chain';
import { startSuiteDatabase } from '@talon/testkit';
import { AuditWriter, type AuditEntry } from '../src/audit.ts';
import { VAULT_SCHEMA, vaultMigrations } from '../src/migrations.ts';

const entry = (i: number, over: Partial<AuditEntry> = {}): AuditEntry => ({
  caller: 'spiffe://talon/egress',
  action: 'resolve',
  secretName: `secret_${i}`,
  host: 'api.example.com:443',
  principal: 'orchestrator',
  allowed: i % 3 !== 0,
  reason: i % 3 !== 0 ? 'allowed' : 'host_not_bound',
  requestId: `req-${i}`,
  ...over,
});

describe('vault audit hash chain (real PostgreSQL)', () => {
  let pool: Pool;
  let stopDb: () => Promise<void>;
  /** Verifies with small pages, so paging is exercised too. */
  const verify = (writer: AuditWriter, pageSize = 7) => verifyVaultTrail((afterId) => writer.chainPage(afterId, pageSize));
  const ids = async () => (await pool.query<{ id: string }>('select id from vault.audit_log order by id')).rows.map((r) => Number(r.id));

  before(async () => {
    const db = await startSuiteDatabase();
    stopDb = db.stop;
    pool = createPool(db.url, { max: 6, applicationName: 'vault-audit-chain' });
    await migrate(pool, VAULT_SCHEMA, vaultMigrations);
  });
  after(async () => {
    await pool?.end();
    await stopDb?.();
  });
  beforeEach(async () => {
    // A fresh chain per test: no rows, head back to the genesis.
    await pool.query('truncate vault.audit_log');
    await pool.query(`update vault.audit_chain_head set last_id = 0, hash = '', anchor_id = 0, anchor_hash = ''`);
  });

  it('rows written one by one and in batches (conditional ones included) form an intact chain', async () => {
    const w = new AuditWriter(pool);
    await w.record(entry(1));
    const epoch = Number((await pool.query<{ epoch: string }>('select epoch from vault.state')).rows[0]!.epoch);
    const outcomes = await Promise.all([
      w.record(entry(2)),
      w.record(entry(3), { ifEpoch: epoch }),
      w.record(entry(4), { ifEpoch: epoch - 1 }),
      ...Array.from({ length: 20 }, (_, i) => w.record(entry(10 + i))),
    ]);
    assert.deepEqual(
      outcomes.slice(0, 3).map((o) => o.written),
      [true, true, false],
    );
    const r = await verify(w);
    assert.equal(r.break, undefined, r.break?.detail);
    assert.equal(r.records, 23);
    assert.equal(r.chains.get('vault')?.anchoredOn, 'genesis');
    const stored = await pool.query<{ prev_hash: string; hash: string }>('select prev_hash, hash from vault.audit_log order by id');
    for (let i = 1; i < stored.rows.length; i++) assert.equal(stored.rows[i]!.prev_hash, stored.rows[i - 1]!.hash);
    assert.match(stored.rows[0]!.prev_hash, /^0{64}$/);
  });

  it('a row edited in SQL is named; with its hash recomputed, the next row is', async () => {
    const w = new AuditWriter(pool);
    for (let i = 1; i <= 6; i++) await w.record(entry(i));
    const [, , third, fourth] = await ids();
    await pool.query(`update vault.audit_log set reason = 'x' where id = $1`, [third]);
    const r = await verify(w);
    assert.equal(r.break?.kind, 'edited');
    assert.equal(r.break?.label, `#${third}`);
    assert.ok(r.break?.atMs && Math.abs(r.break.atMs - Date.now()) < 60_000);

    // A careful forger also recomputes the row's own hash (keeping its prev): the link to it breaks.
    const row = (await w.chainPage(third! - 1, 1)).records[0]!;
    await pool.query(`update vault.audit_log set hash = $1 where id = $2`, [linkHash(row.prevHash, vaultAuditContent(row)), third]);
    const again = await verify(w);
    assert.equal(again.break?.kind, 'link');
    assert.equal(again.break?.label, `#${fourth}`);
  });

  it('a deleted middle row, an inserted row and a deleted newest row each break the chain', async () => {
    const w = new AuditWriter(pool);
    for (let i = 1; i <= 6; i++) await w.record(entry(i));
    const all = await ids();
    await pool.query('delete from vault.audit_log where id = $1', [all[2]]);
    const deleted = await verify(w);
    assert.equal(deleted.break?.kind, 'link');
    assert.equal(deleted.break?.label, `#${all[3]}`);

    await pool.query('truncate vault.audit_log');
    await pool.query(`update vault.audit_chain_head set last_id = 0, hash = '', anchor_id = 0, anchor_hash = ''`);
    for (let i = 1; i <= 4; i++) await w.record(entry(i));
    // A perfect forgery slotted after the first row: linked to it, its own hash right; the
    // rows after it are taken out and put back after it (new ids, same content), as a forger would.
    const [a] = await ids();
    const src = (await w.chainPage(a! - 1, 1)).records[0]!;
    const forged = { ...src, secretName: 'forged' };
    const later = (await pool.query('select * from vault.audit_log where id > $1 order by id', [a])).rows;
    await pool.query('delete from vault.audit_log where id > $1', [a]);
    const cols = 'at, caller, action, owner, secret_name, host, principal, allowed, reason, request_id, prev_hash, hash';
    const put = (r: Record<string, unknown>) =>
      pool.query(`insert into vault.audit_log (${cols}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) returning id`, [
        r.at,
        r.caller,
        r.action,
        r.owner,
        r.secret_name,
        r.host,
        r.principal,
        r.allowed,
        r.reason,
        r.request_id,
        r.prev_hash,
        r.hash,
      ]);
    const [srcRow] = (await pool.query('select * from vault.audit_log where id = $1', [a])).rows;
    await put({ ...srcRow, secret_name: 'forged', prev_hash: src.hash, hash: linkHash(src.hash, vaultAuditContent(forged)) });
    const moved: number[] = [];
    for (const r of later) moved.push(Number((await put(r)).rows[0].id));
    await pool.query('update vault.audit_chain_head set last_id = $1', [moved.at(-1)]);
    const inserted = await verify(w);
    assert.equal(inserted.break?.kind, 'link', inserted.break?.detail);
    assert.equal(inserted.break?.label, `#${moved[0]}`);

    await pool.query('truncate vault.audit_log');
    await pool.query(`update vault.audit_chain_head set last_id = 0, hash = '', anchor_id = 0, anchor_hash = ''`);
    for (let i = 1; i <= 4; i++) await w.record(entry(i));
    const newest = (await ids()).at(-1)!;
    await pool.query('delete from vault.audit_log where id = $1', [newest]);
    const tail = await verify(w);
    assert.equal(tail.break?.kind, 'head');
    assert.equal(tail.break?.label, `#${newest}`);
  });

  it('two writers on the same database (two replicas), interleaved, make one intact chain', async () => {
    const a = new AuditWriter(pool);
    const b = new AuditWriter(pool);
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) writes.push((i % 2 === 0 ? a : b).record(entry(i, { caller: i % 2 === 0 ? 'replica-a' : 'replica-b' })));
    await Promise.all(writes);
    // A second wave while both are busy, with one-by-one awaits in between.
    for (let i = 0; i < 5; i++) {
      await Promise.all([a.record(entry(100 + i)), b.record(entry(200 + i)), a.record(entry(300 + i))]);
    }
    const r = await verify(a, 50);
    assert.equal(r.break, undefined, r.break?.detail);
    assert.equal(r.records, 75);
    const callers = await pool.query<{ caller: string; n: number }>(
      `select caller, count(*)::int as n from vault.audit_log group by caller`,
    );
    assert.equal(callers.rows.find((x) => x.caller === 'replica-a')?.n, 30);
    assert.equal(callers.rows.find((x) => x.caller === 'replica-b')?.n, 30);
  });

  it('retention deletes a prefix and records its anchor: the rest still verifies; deleting one more old row does not', async () => {
    const w = new AuditWriter(pool);
    for (let i = 1; i <= 8; i++) await w.record(entry(i));
    const all = await ids();
    // Age the first three rows (their hashed `at` stays: only retention looks at it here).
    await pool.query(`update vault.audit_log set at = at - interval '40 days' where id <= $1`, [all[2]]);
    assert.equal(await w.prune(30), 3);
    const head = await pool.query<{ anchor_id: string }>('select anchor_id from vault.audit_chain_head');
    assert.equal(Number(head.rows[0]!.anchor_id), all[2]);
    // The aged rows are gone; the rest verify, anchored on the newest pruned row.
    const r = await verify(w);
    assert.equal(r.break, undefined, r.break?.detail);
    assert.equal(r.records, 5);
    assert.equal(r.chains.get('vault')?.anchoredOn, 'anchor');
    assert.equal(r.chains.get('vault')?.first?.label, `#${all[3]}`);

    await pool.query('delete from vault.audit_log where id = $1', [all[3]]);
    const cut = await verify(w);
    assert.equal(cut.break?.kind, 'anchor');
    assert.equal(cut.break?.label, `#${all[4]}`);
  });

  it('rows from before the chain existed are counted, not verified; the chain starts after them', async () => {
    await pool.query(
      `insert into vault.audit_log (caller, action, allowed, reason) values ('old', 'unseal', true, 'allowed'), ('old', 'seal', true, 'allowed')`,
    );
    const w = new AuditWriter(pool);
    for (let i = 1; i <= 3; i++) await w.record(entry(i));
    const r = await verify(w, 2);
    assert.equal(r.break, undefined, r.break?.detail);
    assert.equal(r.unchained, 2);
    assert.equal(r.records, 3);
  });
});
