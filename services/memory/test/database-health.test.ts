// Health follows the database: when the server cuts the service's connections (a
// restart, an operator's pg_terminate_backend), the watch reports it down at once and
// up again when a check answers — with real connections to the native server, whose
// backends are really terminated. (The embedded server cannot terminate a backend.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createPool, pgClientConfig, watchDatabase, type Pool } from '@talon/kit/db';
import { nativeAdminUrl, waitFor } from '@talon/testkit';
import { databaseKinds, startNative, type TestDb } from './databases.ts';

const native = (await databaseKinds()).find((k) => k.kind === 'native');

describe('database watch (native database)', { skip: native?.skip ?? 'the native database is not selected' }, () => {
  let db: TestDb;
  let pool: Pool;
  before(async () => {
    db = await startNative();
    pool = createPool(db.url, { applicationName: 'talon-health-test', max: 2 });
  });
  after(async () => {
    await pool?.end();
    await db?.close();
  });

  it('reports the database down when its connections are cut, and up once it answers again', async () => {
    const seen: boolean[] = [];
    const stop = watchDatabase(pool, (up) => seen.push(up), { intervalMs: 100 });
    try {
      await pool.query('select 1'); // an idle pooled connection the server can cut
      assert.deepEqual(seen, [], 'a healthy database is not reported (and not polled)');
      const admin = new pg.Client(pgClientConfig(nativeAdminUrl()));
      await admin.connect();
      try {
        const r = await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'talon-health-test'`);
        assert.ok(r.rowCount! >= 1, 'a backend was terminated');
      } finally {
        await admin.end();
      }
      await waitFor(() => seen.length >= 2, 30_000, 'down, then up again');
      assert.deepEqual(seen, [false, true]);
      assert.equal((await pool.query<{ one: number }>('select 1 as one')).rows[0]!.one, 1);
    } finally {
      stop();
    }
  });
});
