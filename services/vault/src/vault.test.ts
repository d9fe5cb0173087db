// The vault state machine against a real PostgreSQL (in-process PGlite served on
// loopback, or the native server with TALON_TEST_DATABASE=native): keyring creation,
// wrong passphrases, key zeroing, passphrase change without re-encryption, key
// rotation counters, and rows edited behind the vault's back.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { TalonError } from '@talon/kit/errors';
import { Placement, type ResolveRequest } from '@talon/proto';
import { PGlite } from '@electric-sql/pglite';
import { PgliteWireServer } from '@talon/cli/pglite-wire';
import { startSuiteDatabase } from '@talon/testkit';
import { AuditWriter } from './audit.ts';
import { KDF_MINIMUM } from './crypto.ts';
import { VAULT_SCHEMA, vaultMigrations } from './migrations.ts';
import { VaultStore } from './store.ts';
import { Vault } from './vault.ts';

const PASS = 'correct horse battery staple';
const log = createLogger({ service: 'vault-test', level: 'silent' });
const policy = {
  hosts: ['api.example.com'],
  placement: Placement.PLACEMENT_BEARER,
  field: '',
  principals: ['orchestrator'],
  expiresAtMs: 0,
};
const req = (name: string, r: Partial<ResolveRequest> = {}): ResolveRequest => ({
  name,
  principal: 'orchestrator',
  host: 'api.example.com',
  port: 443,
  placement: Placement.PLACEMENT_BEARER,
  field: '',
  requestId: 'r1',
  ...r,
});
const pass = (s = PASS) => Buffer.from(s);

describe('vault state machine (real PostgreSQL)', () => {
  let pool: Pool;
  let stopDb: () => Promise<void>;

  const newVault = (rotateAfter = 2 ** 24) =>
    new Vault({ store: new VaultStore(pool), audit: new AuditWriter(pool), log, kdf: KDF_MINIMUM, rotateAfter });
  const value = async (v: Vault, name: string) => {
    const r = await v.resolve(req(name), 'egress');
    const s = r.value.toString();
    r.value.fill(0);
    return s;
  };
  const rows = async (sql: string) => (await pool.query(sql)).rows;

  before(async () => {
    const suiteDb = await startSuiteDatabase();
    const url = suiteDb.url;
    stopDb = suiteDb.stop;
    pool = createPool(url, { max: 4, applicationName: 'vault-unit' });
    await migrate(pool, VAULT_SCHEMA, vaultMigrations);
  });
  after(async () => {
    await pool?.end();
    await stopDb?.();
  });
  beforeEach(async () => {
    await pool.query('truncate vault.encrypted_secrets, vault.data_keys, vault.keyring, vault.audit_log');
  });

  it('the first unseal creates the keyring; a wrong passphrase later changes nothing', async () => {
    const v = newVault();
    const before = await v.status();
    assert.equal(before.initialized, false);
    assert.equal(before.sealed, true);
    await assert.rejects(v.unseal(pass('short'), 'admin'), /at least 12 characters/);
    const st = await v.unseal(pass(), 'admin');
    assert.equal(st.keyringCreated, true);
    assert.equal(st.sealed, false);
    assert.equal(st.activeKeyId, 1);
    assert.equal(st.kdf, 'argon2id m=19456KiB t=2 p=1');
    const [kr] = await rows('select kdf, kdf_params, octet_length(salt) as salt_len from vault.keyring');
    assert.deepEqual({ ...kr }, { kdf: 'argon2id', kdf_params: { memoryKiB: 19456, passes: 2, parallelism: 1 }, salt_len: 16 });

    await v.seal('admin');
    const snapshot = JSON.stringify(await rows('select * from vault.keyring, vault.data_keys'));
    await assert.rejects(v.unseal(pass('not the passphrase'), 'admin'), (e: TalonError) => e.code === 'wrong_passphrase');
    assert.equal(v.sealed, true);
    assert.equal(JSON.stringify(await rows('select * from vault.keyring, vault.data_keys')), snapshot);
    assert.equal((await v.unseal(pass(), 'admin')).sealed, false);
    const audit = await rows(`select action, allowed, reason from vault.audit_log where action = 'unseal' order by id`);
    assert.deepEqual(
      audit.map((a) => `${a.allowed}:${a.reason}`),
      ['true:keyring_created', 'false:wrong_passphrase', 'true:allowed'],
    );
  });

  it('seal zeroes the key Buffers it held, and a sealed vault releases nothing', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('s1', Buffer.from('value-one-123'), policy, 'admin');
    const { keyring } = v as unknown as { keyring: { kek: Buffer; keys: Map<number, Buffer> } };
    const held = [keyring.kek, ...keyring.keys.values()];
    assert.ok(held.length >= 2 && held.every((b) => b.some((x) => x !== 0)));
    await v.seal('admin');
    assert.ok(
      held.every((b) => b.every((x) => x === 0)),
      'every key byte is zero after seal',
    );
    await assert.rejects(v.resolve(req('s1'), 'egress'), (e: TalonError) => e.code === 'vault_sealed');
    await assert.rejects(v.scanIndex('egress'), (e: TalonError) => e.code === 'vault_sealed');
    await assert.rejects(v.setSecret('s2', Buffer.from('value-two-123'), policy, 'admin'), (e: TalonError) => e.code === 'vault_sealed');
  });

  it('counts encryptions per data key in the database and rotates when the budget is used', async () => {
    const v = newVault(3);
    await v.unseal(pass(), 'admin');
    for (let i = 1; i <= 7; i++) await v.setSecret(`s${i}`, Buffer.from(`value-number-${i}`), policy, 'admin');
    const keys = await rows('select id, uses::int, active, retired_at is not null as retired from vault.data_keys order by id');
    assert.deepEqual(
      keys.map((k) => ({ ...k })),
      [
        { id: 1, uses: 3, active: false, retired: true },
        { id: 2, uses: 3, active: false, retired: true },
        { id: 3, uses: 1, active: true, retired: false },
      ],
    );
    const byKey = await rows('select key_id, count(*)::int as n from vault.encrypted_secrets group by key_id order by key_id');
    assert.deepEqual(
      byKey.map((r) => [r.key_id, r.n]),
      [
        [1, 3],
        [2, 3],
        [3, 1],
      ],
    );
    // A fresh process (another Vault on the same rows) continues the persisted count.
    await v.seal('admin');
    const w = newVault(3);
    await w.unseal(pass(), 'admin');
    for (let i = 8; i <= 10; i++) await w.setSecret(`s${i}`, Buffer.from(`value-number-${i}`), policy, 'admin');
    assert.deepEqual(
      (await rows('select id, uses::int from vault.data_keys where active')).map((r) => [r.id, r.uses]),
      [[4, 1]],
    );
    for (let i = 1; i <= 10; i++) assert.equal(await value(w, `s${i}`), `value-number-${i}`);
    assert.equal((await w.status()).activeKeyUses, 1);
  });

  it('rotate-key makes a new key active; secrets under older keys still decrypt', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('old', Buffer.from('old-value-1234'), policy, 'admin');
    assert.deepEqual(await v.rotateKey('admin'), { activeKeyId: 2, retiredKeyId: 1 });
    const info = await v.setSecret('new', Buffer.from('new-value-1234'), policy, 'admin');
    assert.equal(info.keyId, 2);
    assert.equal(await value(v, 'old'), 'old-value-1234');
    assert.equal(await value(v, 'new'), 'new-value-1234');
  });

  it('changing the passphrase re-wraps the data keys without re-encrypting any secret', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('s1', Buffer.from('value-one-123'), policy, 'admin');
    const secretsBefore = JSON.stringify(await rows('select * from vault.encrypted_secrets'));
    const wrappedBefore = JSON.stringify(await rows('select wrapped_key from vault.data_keys'));
    await assert.rejects(
      v.changePassphrase(pass('wrong passphrase here'), pass('a brand new passphrase'), 'admin'),
      (e: TalonError) => e.code === 'wrong_passphrase',
    );
    await assert.rejects(v.changePassphrase(pass(), pass('too short'), 'admin'), /at least 12/);
    await v.changePassphrase(pass(), pass('a brand new passphrase'), 'admin');
    assert.equal(JSON.stringify(await rows('select * from vault.encrypted_secrets')), secretsBefore);
    assert.notEqual(JSON.stringify(await rows('select wrapped_key from vault.data_keys')), wrappedBefore);
    assert.equal(await value(v, 's1'), 'value-one-123', 'the unsealed vault keeps working');
    await v.seal('admin');
    await assert.rejects(v.unseal(pass(), 'admin'), (e: TalonError) => e.code === 'wrong_passphrase');
    await v.unseal(pass('a brand new passphrase'), 'admin');
    assert.equal(await value(v, 's1'), 'value-one-123');
  });

  it('a replica whose passphrase went stale seals itself instead of wrapping keys under the old KEK', async () => {
    const a = newVault();
    const b = newVault();
    await a.unseal(pass(), 'admin');
    await b.unseal(pass(), 'admin');
    await a.changePassphrase(pass(), pass('a brand new passphrase'), 'admin');
    await assert.rejects(b.rotateKey('admin'), (e: TalonError) => e.code === 'vault_sealed' && /another replica/.test(e.message));
    assert.equal(b.sealed, true);
    assert.equal((await rows('select count(*)::int as n from vault.data_keys'))[0]!.n, 1);
  });

  it('a policy edited in the database (rebinding the secret to another host) makes the row fail to decrypt', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('s1', Buffer.from('value-one-123'), policy, 'admin');
    await pool.query(`update vault.encrypted_secrets set policy = jsonb_set(policy, '{hosts}', '["evil.example.net"]')`);
    await assert.rejects(v.resolve(req('s1', { host: 'evil.example.net' }), 'egress'), (e: TalonError) => e.code === 'secret_corrupt');
    // Rotating must not re-seal the tampered policy under a fresh, valid tag.
    await assert.rejects(v.rotateSecret('s1', Buffer.from('value-two-123'), 'admin'), (e: TalonError) => e.code === 'secret_corrupt');
    const audit = await rows(`select reason from vault.audit_log where action = 'resolve'`);
    assert.deepEqual(
      audit.map((r) => r.reason),
      ['integrity_failure'],
    );
  });

  it('set on an existing name writes the next version; rotate keeps the policy; rm deletes every version', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    assert.equal((await v.setSecret('s1', Buffer.from('value-one-123'), policy, 'admin')).version, 1);
    assert.equal((await v.setSecret('s1', Buffer.from('value-two-123'), { ...policy, hosts: ['api.example.org'] }, 'admin')).version, 2);
    const r = await v.rotateSecret('s1', Buffer.from('value-three-12'), 'admin');
    assert.equal(r.version, 3);
    assert.deepEqual(r.policy?.hosts, ['api.example.org']);
    assert.equal((await v.resolve(req('s1', { host: 'api.example.org' }), 'egress')).value.toString(), 'value-three-12');
    assert.deepEqual(
      (await v.listSecrets()).map((s) => [s.name, s.version]),
      [['s1', 3]],
    );
    await assert.rejects(v.rotateSecret('nope', Buffer.from('value-three-12'), 'admin'), (e: TalonError) => e.code === 'not_found');
    assert.equal(await v.deleteSecret('s1', 'admin'), 3);
    await assert.rejects(v.deleteSecret('s1', 'admin'), (e: TalonError) => e.code === 'not_found');
    assert.equal((await rows('select count(*)::int as n from vault.encrypted_secrets'))[0]!.n, 0);
  });
});

describe('Resolve row cache and audit-before-release (real PostgreSQL)', () => {
  let pool: Pool;
  let stopDb: () => Promise<void>;
  const newVault = () =>
    new Vault({ store: new VaultStore(pool), audit: new AuditWriter(pool), log, kdf: KDF_MINIMUM, rotateAfter: 2 ** 24 });
  const allowedCount = async () =>
    (await pool.query(`select count(*)::int as n from vault.audit_log where action = 'resolve' and allowed`)).rows[0].n as number;

  before(async () => {
    const db = await PGlite.create('memory://');
    const server = new PgliteWireServer({ db, port: 0, host: '127.0.0.1', maxConnections: 16 });
    const port = await server.start();
    pool = createPool(`postgres://postgres@127.0.0.1:${port}/postgres`, { max: 4, applicationName: 'vault-unit' });
    await migrate(pool, VAULT_SCHEMA, vaultMigrations);
    stopDb = async () => {
      await pool.end();
      await server.stop();
      await db.close();
    };
  });
  after(async () => {
    await stopDb?.();
  });

  it('audit group commit: concurrent records share one insert; a conditional record is written only at its epoch', async () => {
    const audit = new AuditWriter(pool);
    const epoch = Number((await pool.query('select epoch from vault.state')).rows[0].epoch);
    const rec = (reason: string) => ({ caller: 'egress', action: 'gc-test', allowed: true, reason });
    // The first record is flushed alone; the next two arrive while it is in flight and share the batched insert.
    const outcomes = await Promise.all([
      audit.record(rec('unconditional')),
      audit.record(rec('current-epoch'), { ifEpoch: epoch }),
      audit.record(rec('stale-epoch'), { ifEpoch: epoch - 1 }),
      audit.record(rec('batched-unconditional')),
    ]);
    assert.deepEqual(
      outcomes.map((o) => o.written),
      [true, true, false, true],
    );
    const rows = await pool.query(`select reason from vault.audit_log where action = 'gc-test' order by id`);
    assert.deepEqual(
      rows.rows.map((r) => r.reason),
      ['unconditional', 'current-epoch', 'batched-unconditional'],
    );
  });

  it('concurrent Resolves are each audited exactly once', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('busy', Buffer.from('value-busy-123'), policy, 'admin');
    const before = await allowedCount();
    const values = await Promise.all(Array.from({ length: 40 }, () => v.resolve(req('busy'), 'egress')));
    assert.ok(values.every((r) => r.value.toString() === 'value-busy-123'));
    assert.equal(await allowedCount(), before + 40);
  });

  it('prunes audit records older than the retention period, and only those', async () => {
    const audit = new AuditWriter(pool);
    // Pruning deletes a prefix of the chain (up to the newest old row): only these two rows in it.
    await pool.query('delete from vault.audit_log');
    await pool.query(
      `insert into vault.audit_log (at, caller, action, allowed, reason) values (now() - interval '91 days', 'egress', 'old', true, 'x'), (now() - interval '89 days', 'egress', 'recent', true, 'x')`,
    );
    assert.equal(await audit.prune(90), 1);
    const left = await pool.query(`select action from vault.audit_log where action in ('old', 'recent')`);
    assert.deepEqual(
      left.rows.map((r) => r.action),
      ['recent'],
    );
  });

  it('every release (cached or not) has its own committed audit row', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('k', Buffer.from('value-one-123'), policy, 'admin');
    const before = await allowedCount();
    for (let i = 0; i < 5; i++) assert.equal((await v.resolve(req('k'), 'egress')).value.toString(), 'value-one-123');
    assert.equal(await allowedCount(), before + 5);
  });

  it('a policy change made through another replica is honoured at once (the cache follows the epoch)', async () => {
    const a = newVault();
    const b = newVault();
    await a.unseal(pass(), 'admin');
    await b.unseal(pass(), 'admin');
    await a.setSecret('moving', Buffer.from('value-one-123'), policy, 'admin');
    assert.equal((await a.resolve(req('moving'), 'egress')).value.toString(), 'value-one-123'); // now cached in a
    await b.setSecret('moving', Buffer.from('value-two-123'), { ...policy, hosts: ['api.example.org'] }, 'admin');
    await assert.rejects(
      a.resolve(req('moving'), 'egress'),
      (e: TalonError) => e.code === 'policy_denied' && /^host_not_bound/.test(e.message),
    );
    assert.equal((await a.resolve(req('moving', { host: 'api.example.org' }), 'egress')).value.toString(), 'value-two-123');
    await b.deleteSecret('moving', 'admin');
    await assert.rejects(a.resolve(req('moving', { host: 'api.example.org' }), 'egress'), (e: TalonError) => e.code === 'not_found');
  });

  it('no value is released when the audit row cannot be written (cold and cached paths)', async () => {
    const v = newVault();
    await v.unseal(pass(), 'admin');
    await v.setSecret('audited', Buffer.from('value-one-123'), policy, 'admin');
    await v.setSecret('audited2', Buffer.from('value-two-123'), policy, 'admin');
    assert.equal((await v.resolve(req('audited'), 'egress')).value.toString(), 'value-one-123'); // cached
    await pool.query('alter table vault.audit_log rename to audit_log_gone');
    try {
      for (const name of ['audited', 'audited2']) {
        await assert.rejects(
          v.resolve(req(name), 'egress'),
          (e: TalonError) => e.code === 'unavailable' && /audit log cannot be written/.test(e.message),
        );
      }
    } finally {
      await pool.query('alter table vault.audit_log_gone rename to audit_log');
    }
    assert.equal((await v.resolve(req('audited2'), 'egress')).value.toString(), 'value-two-123');
  });
});
