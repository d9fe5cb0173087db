// The pristine-cluster template: initdb's result saved once, restored into fresh data
// directories without anything later written to the database it came from, and a
// broken template replaced by initdb rather than failing the start.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vector } from '@electric-sql/pglite-pgvector';
import { openWithTemplate, templateFile } from './pgdata-template.ts';

describe('pgdata template', () => {
  const root = mkdtempSync(join(tmpdir(), 'talon-pgdata-template-'));
  const template = templateFile(join(root, 'cache'));
  const opts = { extensions: { vector } };
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);
  after(() => rmSync(root, { recursive: true, force: true }));

  it('names the template after the PGlite and pgvector versions', () => {
    assert.match(template, /pglite-\d+\.\d+\.\d+[^/]*-pgvector-\d+\.\d+\.\d+[^/]*\.tar$/);
  });

  it('runs initdb on the first fresh directory and saves the result; a later one is restored from it, pristine', async () => {
    const first = await openWithTemplate(join(root, 'a'), template, opts, warn);
    assert.equal(first.origin, 'initdb');
    assert.ok(statSync(template).size > 1024 * 1024, 'a template was saved');
    // Written after the template was saved: must not reach the next database.
    await first.db.exec('create table written_later (x int); insert into written_later values (1)');
    await first.db.close();

    const second = await openWithTemplate(join(root, 'b'), template, opts, warn);
    assert.equal(second.origin, 'template');
    // Unpacked by Node's fs, readable by this user alone.
    assert.equal(statSync(join(root, 'b', 'PG_VERSION')).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, 'b', 'base')).mode & 0o777, 0o700);
    const { rows } = await second.db.query<{ t: string | null }>("select to_regclass('public.written_later')::text as t");
    assert.equal(rows[0]!.t, null);
    await second.db.exec('create extension if not exists vector; create table kept (v vector(3)); insert into kept values ($$[1,2,3]$$)');
    await second.db.close();

    // Restored clusters persist like any other: reopened as they were left.
    const again = await openWithTemplate(join(root, 'b'), template, opts, warn);
    assert.equal(again.origin, 'existing');
    assert.equal((await again.db.query<{ v: string }>('select v::text from kept')).rows[0]!.v, '[1,2,3]');
    await again.db.close();
    assert.deepEqual(warnings, []);
  });

  it('replaces a template that cannot be restored by running initdb, and says so', async () => {
    writeFileSync(template, 'not a tar archive');
    const opened = await openWithTemplate(join(root, 'c'), template, opts, warn);
    assert.equal(opened.origin, 'initdb');
    assert.equal((await opened.db.query<{ x: number }>('select 1 as x')).rows[0]!.x, 1);
    await opened.db.close();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /could not be restored/);
    assert.ok(statSync(template).size > 1024 * 1024, 'a good template replaced the broken one');
  });
});
