// Another replica's change reaches this replica's watchers by LISTEN/NOTIFY, on a PostgreSQL
// server and on the embedded PGlite behind its wire server.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { Placement } from '@talon/proto';
import { startSuiteDatabase, testDatabaseKind, waitFor } from '@talon/testkit';
import { AuditWriter } from './audit.ts';
import { KDF_MINIMUM } from './crypto.ts';
import { listenForEpochChanges, type EpochListener } from './epoch-listener.ts';
import { VAULT_SCHEMA, vaultMigrations } from './migrations.ts';
import { VaultStore } from './store.ts';
import { Vault, type VaultStateView } from './vault.ts';

const log = createLogger({ service: 'vault-test', level: 'silent' });
const policy = {
  hosts: ['api.example.com'],
  placement: Placement.PLACEMENT_BEARER,
  field: '',
  principals: ['orchestrator'],
  expiresAtMs: 0,
};

describe('epoch changes across replicas', () => {
  let pool: Pool;
  let listenPool: Pool;
  let listener: EpochListener | undefined;
  let stopDb: () => Promise<void>;

  before(async () => {
    const db = await startSuiteDatabase();
    stopDb = db.stop;
    pool = createPool(db.url, { max: 4, applicationName: 'vault-unit' });
    listenPool = createPool(db.url, { max: 1, applicationName: 'vault-unit-listen' });
    await migrate(pool, VAULT_SCHEMA, vaultMigrations);
  });
  after(async () => {
    listener?.stop();
    await listenPool.end();
    await pool.end();
    await stopDb();
  });

  it("a watcher of replica A sees replica B's secret change and seal, once each", async () => {
    const newVault = () =>
      new Vault({ store: new VaultStore(pool), audit: new AuditWriter(pool), log, kdf: KDF_MINIMUM, rotateAfter: 1000 });
    const a = newVault();
    const b = newVault();
    await a.unseal(Buffer.from('correct horse battery staple'), 'admin');
    await b.unseal(Buffer.from('correct horse battery staple'), 'admin');
    listener = listenForEpochChanges({ listenPool, pool, log, onChange: () => a.stateMayHaveChanged(), fallbackPollMs: 200 });
    await waitFor(() => listener?.mode !== undefined, 10_000, 'the listener to choose its mode');
    // PostgreSQL delivers notifications, and so does the embedded PGlite's wire server (packages/cli/src/db/wire.ts).
    assert.equal(listener.mode, 'listen', `on the ${testDatabaseKind()} database`);

    const got: VaultStateView[] = [];
    const sub = a.watch((s) => got.push(s));
    await sub.done;
    assert.equal(got.length, 1);
    const start = got[0]!;
    assert.equal(start.sealed, false);

    await b.setSecret('from_b', Buffer.from('value-from-b-123'), policy, 'admin');
    await waitFor(() => got.some((s) => s.epoch > start.epoch), 5000, "replica B's change to reach A's watcher");
    const afterSet = got.at(-1)!;
    assert.equal(afterSet.sealed, false, "B's change does not seal A");

    // B sealing moves the epoch (A stays unsealed); A sealing itself is pushed at once.
    await b.seal('admin');
    await waitFor(() => got.at(-1)!.epoch > afterSet.epoch, 5000, "B's seal to reach A's watcher");
    const n = got.length;
    await a.seal('admin');
    await waitFor(() => got.length > n && got.at(-1)!.sealed, 5000, "A's own seal");
    const keys = got.map((s) => `${s.epoch}:${s.sealed}`);
    assert.equal(new Set(keys).size, keys.length, `each state sent once: ${keys.join(' ')}`);
    sub.unsubscribe();
  });
});
