// Several clients on the one PGlite session: parameterised queries of different
// shapes from concurrent connections must never interleave between Parse and Sync,
// and a transaction keeps its connection's statements together.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { PgliteWireServer } from './wire.ts';
import { StatementProfile } from './statement-profile.ts';

describe('PGlite wire server', () => {
  let db: PGlite;
  let server: PgliteWireServer;
  let url: string;
  before(async () => {
    db = await PGlite.create('memory://');
    server = new PgliteWireServer({ db, host: '127.0.0.1', port: 0, maxConnections: 32 });
    url = `postgres://postgres@127.0.0.1:${await server.start()}/postgres`;
  });
  after(async () => {
    await server.stop();
    await db.close();
  });

  it('keeps concurrent extended-protocol queries of different shapes apart', async () => {
    const a = new pg.Pool({ connectionString: url, max: 8 });
    const b = new pg.Pool({ connectionString: url, max: 8 });
    try {
      const runs: Array<Promise<void>> = [];
      for (let i = 0; i < 200; i++) {
        runs.push(
          a.query('select $1::int + $2::int as s', [i, 1]).then((r) => assert.equal(r.rows[0].s, i + 1)),
          b
            .query('select $1::text || $2::text || $3::text || $4::text || $5::text as s', ['a', 'b', 'c', 'd', String(i)])
            .then((r) => assert.equal(r.rows[0].s, `abcd${i}`)),
        );
      }
      await Promise.all(runs);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('runs a transaction’s statements together and rolls back a client that vanishes mid-transaction', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    try {
      await pool.query('create table t (v int)');
      const c1 = await pool.connect();
      await c1.query('begin');
      await c1.query('insert into t values ($1)', [1]);
      // Another connection's query waits for the transaction, then sees its outcome.
      const other = pool.query('select count(*)::int as n from t');
      await c1.query('insert into t values ($1)', [2]);
      await c1.query('commit');
      c1.release();
      assert.equal((await other).rows[0].n, 2);

      const c2 = new pg.Client({ connectionString: url });
      c2.on('error', () => undefined); // we cut its connection on purpose
      await c2.connect();
      await c2.query('begin');
      await c2.query('insert into t values (99)');
      (c2 as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal((await pool.query('select count(*)::int as n from t where v = 99')).rows[0].n, 0);
    } finally {
      await pool.end();
    }
  });

  it('gives each connection its own named statements, and closes them when the connection goes', async () => {
    const one = new pg.Client(url);
    const two = new pg.Client(url);
    const observer = new pg.Client(url);
    await one.connect();
    await two.connect();
    await observer.connect();
    const prepared = async () =>
      (await observer.query(`select count(*)::int as n from pg_prepared_statements where name like '%\\_same'`)).rows[0].n as number;
    try {
      // Same name, different statements: on PostgreSQL each connection has its own.
      for (let i = 0; i < 3; i++) {
        const [a, b] = await Promise.all([
          one.query({ name: 'same', text: 'select $1::int + 1 as v', values: [i] }),
          two.query({ name: 'same', text: `select $1::text || '!' as v`, values: [`x${i}`] }),
        ]);
        assert.equal(a.rows[0].v, i + 1);
        assert.equal(b.rows[0].v, `x${i}!`);
      }
      assert.equal(await prepared(), 2);
      await one.end();
      const deadline = Date.now() + 5000;
      while ((await prepared()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await prepared(), 1, 'the closed connection’s statement is gone');
      assert.equal((await two.query({ name: 'same', text: `select $1::text || '!' as v`, values: ['y'] })).rows[0].v, 'y!');
    } finally {
      await two.end();
      await observer.end();
    }
  });
});

describe('PGlite wire server: LISTEN/NOTIFY between connections', () => {
  let db: PGlite;
  let server: PgliteWireServer;
  let url: string;
  before(async () => {
    db = await PGlite.create('memory://');
    server = new PgliteWireServer({ db, host: '127.0.0.1', port: 0, maxConnections: 8 });
    url = `postgres://postgres@127.0.0.1:${await server.start()}/postgres`;
  });
  after(async () => {
    await server.stop();
    await db.close();
  });

  it('delivers a committed notification to the connections listening on its channel, and only to them', async () => {
    const listener = new pg.Client(url);
    const other = new pg.Client(url);
    const notifier = new pg.Pool({ connectionString: url, max: 2 });
    await listener.connect();
    await other.connect();
    try {
      const got: Array<{ channel: string; payload: string | undefined }> = [];
      const strays: string[] = [];
      listener.on('notification', (n) => got.push({ channel: n.channel, payload: n.payload }));
      other.on('notification', (n) => strays.push(n.channel));
      await listener.query('LISTEN epoch_changes');
      await other.query('listen "Other"');
      await notifier.query(`select pg_notify('epoch_changes', '41')`);
      const c = await notifier.connect();
      try {
        await c.query('begin');
        await c.query(`select pg_notify('epoch_changes', $1)`, ['42']);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(got.length, 1, 'not delivered before commit');
        await c.query('commit');
      } finally {
        c.release();
      }
      const deadline = Date.now() + 5000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(got, [
        { channel: 'epoch_changes', payload: '41' },
        { channel: 'epoch_changes', payload: '42' },
      ]);
      assert.deepEqual(strays, [], 'a connection listening on another channel gets nothing');
      await listener.query('unlisten epoch_changes');
      await notifier.query(`select pg_notify('epoch_changes', '43')`);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(got.length, 2, 'nothing after UNLISTEN');
    } finally {
      await listener.end();
      await other.end();
      await notifier.end();
    }
  });
});

describe('PGlite wire server: statement profiling', () => {
  it('reports each client unit with its time, so a profile sums prepared statements under their SQL', async () => {
    const db = await PGlite.create('memory://');
    const profile = new StatementProfile({ redact: (s) => s });
    const server = new PgliteWireServer({
      db,
      host: '127.0.0.1',
      port: 0,
      maxConnections: 4,
      onUnit: (bytes, ms) => profile.record(bytes, ms),
    });
    const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${await server.start()}/postgres` });
    try {
      await client.connect();
      profile.take();
      const named = { name: 'sum', text: 'select $1::int + 1 as s' };
      for (let i = 0; i < 3; i++) assert.equal((await client.query({ ...named, values: [i] })).rows[0].s, i + 1);
      await client.query('select pg_sleep(0.05)');
      const rows = profile.take().rows;
      const sum = rows.find((r) => r.sql === named.text);
      assert.equal(sum?.calls, 3, JSON.stringify(rows));
      const sleep = rows.find((r) => r.sql === 'select pg_sleep(0.05)');
      assert.equal(sleep?.calls, 1);
      assert.ok(sleep.ms >= 45, `pg_sleep(0.05) took ${sleep.ms} ms`);
    } finally {
      await client.end();
      await server.stop();
      await db.close();
    }
  });
});
