import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LOG_FILES, DEFAULT_LOG_MAX_BYTES, logRotation, RotatingLogFile, rotationMoves } from './log-file.ts';
import { ManagedProcess } from './process.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'talon-logs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every line of `<file>` and its rotated siblings, oldest first. */
function allLines(file: string, files: number): string[] {
  const out: string[] = [];
  for (let i = files; i >= 1; i--) if (existsSync(`${file}.${i}`)) out.push(...readFileSync(`${file}.${i}`, 'utf8').split('\n'));
  out.push(...readFileSync(file, 'utf8').split('\n'));
  return out.filter((l) => l !== '');
}

describe('log rotation settings', () => {
  it('defaults to 10 MiB and 5 files, reads TALON_LOG_MAX_BYTES and TALON_LOG_FILES', () => {
    assert.deepEqual(logRotation({}), { maxBytes: DEFAULT_LOG_MAX_BYTES, files: DEFAULT_LOG_FILES });
    assert.equal(DEFAULT_LOG_MAX_BYTES, 10 * 1024 * 1024);
    assert.deepEqual(logRotation({ TALON_LOG_MAX_BYTES: '4096', TALON_LOG_FILES: '2' }), { maxBytes: 4096, files: 2 });
  });

  it('refuses nonsense with the variable to fix', () => {
    assert.throws(() => logRotation({ TALON_LOG_MAX_BYTES: '10MB' }), /TALON_LOG_MAX_BYTES must be an integer/);
    assert.throws(() => logRotation({ TALON_LOG_MAX_BYTES: '12' }), /at least 1024/);
    assert.throws(() => logRotation({ TALON_LOG_FILES: '0' }), /TALON_LOG_FILES/);
  });

  it('moves the oldest first so nothing is overwritten', () => {
    assert.deepEqual(rotationMoves('g.log', 3), [
      ['g.log.2', 'g.log.3'],
      ['g.log.1', 'g.log.2'],
      ['g.log', 'g.log.1'],
    ]);
    assert.deepEqual(rotationMoves('g.log', 1), [['g.log', 'g.log.1']]);
  });
});

describe('RotatingLogFile', () => {
  it('rotates past the limit, keeps N files, never splits a line', (t) => {
    const file = join(tempDir(t), 'x.log');
    const log = new RotatingLogFile(file, { maxBytes: 1024, files: 2 });
    // Lines written in pieces: a rotation must wait for the end of the line.
    for (let i = 0; i < 100; i++) {
      log.write(`line ${String(i).padStart(3, '0')} `);
      log.write(`${'x'.repeat(40)}\n`);
    }
    log.close();
    assert.ok(existsSync(`${file}.1`) && existsSync(`${file}.2`));
    assert.ok(!existsSync(`${file}.3`), 'only 2 rotated files are kept');
    for (const f of [file, `${file}.1`, `${file}.2`]) {
      const text = readFileSync(f, 'utf8');
      assert.ok(text.length <= 1024 + 50, `${f} is near the limit (${text.length})`);
      assert.match(text, /^(line \d{3} x{40}\n)+$/, `${f} holds whole lines only`);
    }
    // The three files hold the newest lines in order, with none missing between them.
    const nums = allLines(file, 2).map((l) => Number(/^line (\d+)/.exec(l)![1]));
    assert.equal(nums.at(-1), 99);
    for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1]! + 1);
  });

  it('appends to an existing file and counts its size', (t) => {
    const file = join(tempDir(t), 'y.log');
    const a = new RotatingLogFile(file, { maxBytes: 2048, files: 1 });
    a.write(`${'a'.repeat(1500)}\n`);
    a.close();
    const b = new RotatingLogFile(file, { maxBytes: 2048, files: 1 });
    b.write(`${'b'.repeat(1000)}\n`);
    b.close();
    assert.equal(readFileSync(`${file}.1`, 'utf8'), `${'a'.repeat(1500)}\n`);
    assert.equal(readFileSync(file, 'utf8'), `${'b'.repeat(1000)}\n`);
  });
});

describe('ManagedProcess log rotation', () => {
  it('a child writing more than the limit rotates into .1 and keeps every line', async (t) => {
    const file = join(tempDir(t), 'child.log');
    const n = 3000;
    const script = `for (let i = 0; i < ${n}; i++) process.stdout.write('row ' + i + ' ' + 'y'.repeat(30) + '\\n');`;
    const proc = new ManagedProcess({
      name: 'child',
      command: process.execPath,
      args: ['-e', script],
      env: { PATH: process.env.PATH },
      logFile: file,
      rotation: { maxBytes: 64 * 1024, files: 5 },
    });
    const info = await proc.exited;
    await proc.logged;
    assert.equal(info.code, 0);
    assert.ok(existsSync(`${file}.1`), 'rotated into .1');
    const rows = allLines(file, 5);
    assert.equal(rows.length, n, 'every line is kept');
    rows.forEach((l, i) => assert.ok(l.startsWith(`row ${i} `), `line ${i} in order: ${l.slice(0, 20)}`));
  });
});
