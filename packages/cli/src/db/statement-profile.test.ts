// The statement profile sums units by the SQL they ran: a simple query by its text, an
// extended-protocol unit by its Parse, a later Bind of a named statement under the SQL
// that statement was prepared with; keys are redacted and cut, parameters never read.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PREPARED_NAMES_KEPT, STATEMENT_KEY_CHARS, StatementProfile, formatStatementRows } from './statement-profile.ts';

/** One frontend message: type, int32 length (itself included), body. */
function msg(type: string, ...parts: Array<string | Buffer>): Buffer {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(`${p}\0`) : p)));
  const head = Buffer.alloc(5);
  head.write(type, 0);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}
const noParams = Buffer.alloc(2);
const sync = msg('S');
/** Bind with one text parameter: portal, statement, no format codes, the value, no result formats. */
function bind(statement: string, value: string): Buffer {
  const v = Buffer.from(value);
  const len = Buffer.alloc(4);
  len.writeInt32BE(v.length);
  return msg('B', '', statement, noParams, Buffer.from([0, 1]), len, v, noParams);
}
const unit = (...m: Buffer[]) => new Uint8Array(Buffer.concat(m));
const plain = new StatementProfile({ redact: (s) => s });

describe('statement profile', () => {
  it('sums simple queries by their text, whitespace collapsed', () => {
    const p = new StatementProfile({ redact: (s) => s });
    p.record(unit(msg('Q', 'begin')), 1);
    p.record(unit(msg('Q', '  begin\n')), 2);
    p.record(unit(msg('Q', 'commit')), 0.5);
    assert.deepEqual(p.take().rows, [
      { sql: 'begin', calls: 2, ms: 3 },
      { sql: 'commit', calls: 1, ms: 0.5 },
    ]);
  });

  it('counts a later Bind of a named statement under the SQL it was prepared with, and never reads parameters', () => {
    const p = new StatementProfile({ redact: (s) => s });
    const sql = 'select content\n  from memory.chunks where user_id = $1';
    p.record(unit(msg('P', 'c1_memory_ab', sql, noParams), bind('c1_memory_ab', 'alice'), msg('E', '', Buffer.alloc(4)), sync), 4);
    p.record(unit(bind('c1_memory_ab', 'bob-secret-value'), msg('E', '', Buffer.alloc(4)), sync), 2);
    p.record(unit(msg('P', '', 'select 1', noParams), bind('', ''), sync), 1);
    const { rows } = p.take();
    assert.deepEqual(rows, [
      { sql: 'select content from memory.chunks where user_id = $1', calls: 2, ms: 6 },
      { sql: 'select 1', calls: 1, ms: 1 },
    ]);
    assert.doesNotMatch(JSON.stringify(rows), /alice|bob-secret-value/);
  });

  it('names a Bind whose statement was prepared before profiling began, and a unit with no statement', () => {
    const p = new StatementProfile({ redact: (s) => s });
    p.record(unit(bind('c3_old', 'x'), sync), 1);
    p.record(unit(sync), 1);
    assert.deepEqual(
      p.take().rows.map((r) => r.sql),
      ['(statement c3_old prepared before profiling)', '(no statement: startup, close or flush)'],
    );
  });

  it('remembers at most PREPARED_NAMES_KEPT prepared names, forgetting the oldest', () => {
    const p = new StatementProfile({ redact: (s) => s });
    for (let i = 0; i <= PREPARED_NAMES_KEPT; i++) p.record(unit(msg('P', `c${i}_s`, `select ${i}`, noParams), sync), 1);
    p.take();
    p.record(unit(bind('c0_s', ''), sync), 1);
    p.record(unit(bind(`c${PREPARED_NAMES_KEPT}_s`, ''), sync), 1);
    assert.deepEqual(
      p.take().rows.map((r) => r.sql),
      ['(statement c0_s prepared before profiling)', `select ${PREPARED_NAMES_KEPT}`],
    );
  });

  it('redacts every key and keeps at most STATEMENT_KEY_CHARS of it', () => {
    const p = new StatementProfile({ redact: (s) => s.replaceAll('hunter2', '[REDACTED]') });
    p.record(unit(msg('Q', `alter role talon password 'hunter2'; ${'x'.repeat(400)}`)), 1);
    const [row] = p.take().rows;
    assert.ok(row!.sql.startsWith("alter role talon password '[REDACTED]'"));
    assert.equal(row!.sql.length, STATEMENT_KEY_CHARS);
  });

  it('take starts anew and reports the time it covers', () => {
    const p = new StatementProfile({ redact: (s) => s });
    const first = p.take(Date.now());
    p.record(unit(msg('Q', 'select 2')), 3);
    const later = p.take(Date.now() + 1000);
    assert.deepEqual(first.rows, []);
    assert.equal(later.rows.length, 1);
    assert.ok(later.sinceMs >= 1000);
    assert.deepEqual(p.take().rows, []);
  });

  it('formats rows per turn with a total line', () => {
    plain.record(unit(msg('Q', 'select 3')), 30);
    const lines = formatStatementRows(plain.take().rows, 10);
    assert.match(lines[1]!, /^\s+3\.00\s+0\.10\s+30\.00 {2}select 3$/);
    assert.match(lines.at(-1)!, /3\.00 .* all statements \(1\)$/);
  });
});
