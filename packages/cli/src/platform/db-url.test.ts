import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { parseDbUrl } from './db-url.ts';
import { redactUrl } from './database.ts';

describe('database URLs', () => {
  it("reads libpq's Unix-socket form and keeps the socket directory", () => {
    const u = parseDbUrl('postgres://postgres@/talon?host=/var/run/postgresql');
    assert.equal(u.username, 'postgres');
    assert.equal(u.pathname, '/talon');
    assert.equal(u.searchParams.get('host'), '/var/run/postgresql');
    u.username = 'talon_memory';
    u.password = 'pw';
    assert.equal(u.toString(), 'postgres://talon_memory:pw@localhost/talon?host=/var/run/postgresql');
    assert.equal(parseDbUrl('postgresql:///talon?host=/tmp').searchParams.get('host'), '/tmp');
    assert.equal(redactUrl('postgres://u:secret@/db?host=/run/pg'), 'postgres://u:****@localhost/db?host=/run/pg');
  });

  it('leaves ordinary URLs as they are and names the accepted forms for a broken one', () => {
    assert.equal(parseDbUrl('postgres://u:p@db.example:5433/t').host, 'db.example:5433');
    assert.throws(() => parseDbUrl('postgres://u@[bad/db'), /Unix socket/);
  });

  // The machine's PostgreSQL socket, when there is one: the rewritten URL really connects through it.
  const socket = '/var/run/postgresql';
  it(
    'connects through the socket with the rewritten URL',
    { skip: existsSync(`${socket}/.s.PGSQL.5432`) ? false : `no socket in ${socket}` },
    async () => {
      const c = new pg.Client({ connectionString: parseDbUrl(`postgres://postgres@/postgres?host=${socket}`).toString() });
      await c.connect();
      try {
        assert.equal((await c.query<{ one: number }>('select 1 as one')).rows[0]!.one, 1);
      } finally {
        await c.end();
      }
    },
  );
});
