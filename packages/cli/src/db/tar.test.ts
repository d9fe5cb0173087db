import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTar, safeEntryPath, TarError } from './tar.ts';

/** One ustar header, checksummed as tar writes it. */
function header(name: string, size: number, flag = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000600\0', 100);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write(flag, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(0x20, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}
const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
const archive = (...parts: Buffer[]) => Buffer.concat([...parts, Buffer.alloc(1024)]);

describe('readTar', () => {
  const root = mkdtempSync(join(tmpdir(), 'talon-tar-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('reads what tar writes in ustar format: files, directories and a path longer than 100 bytes', () => {
    const src = join(root, 'src');
    const deep = join('base', 'x'.repeat(60), 'y'.repeat(60));
    mkdirSync(join(src, deep), { recursive: true });
    writeFileSync(join(src, 'PG_VERSION'), '17\n');
    writeFileSync(join(src, deep, '1247'), Buffer.alloc(8192 + 5, 7));
    const file = join(root, 'a.tar');
    execFileSync('tar', ['--format=ustar', '-cf', file, '-C', src, 'PG_VERSION', 'base']);

    const entries = readTar(readFileSync(file));
    const byPath = new Map(entries.map((e) => [e.path, e]));
    assert.equal(byPath.get('PG_VERSION')?.data.toString(), '17\n');
    assert.equal(byPath.get('base')?.type, 'dir');
    const big = byPath.get(`${deep}/1247`);
    assert.equal(big?.type, 'file');
    assert.equal(big.data.length, 8192 + 5);
    assert.ok(big.data.every((b) => b === 7));
  });

  it('takes leading slashes off, as PGlite writes its paths', () => {
    const data = Buffer.from('on');
    const [e] = readTar(archive(header('/pg_hba.conf', data.length), pad(data)));
    assert.equal(e?.path, 'pg_hba.conf');
    assert.equal(e.data.toString(), 'on');
  });

  it('refuses an entry that would leave the target directory', () => {
    for (const name of ['../outside', 'base/../../outside', '/', 'a//b', './x'])
      assert.throws(() => readTar(archive(header(name, 0))), TarError, name);
    assert.equal(safeEntryPath('/base/1/'), 'base/1');
  });

  it('refuses links, a bad checksum, a cut-short file and a missing end', () => {
    assert.throws(() => readTar(archive(header('link', 0, '2'))), /neither a file nor a directory/);
    const bad = header('f', 0);
    bad[0] = 0x67;
    assert.throws(() => readTar(archive(bad)), /checksum/);
    assert.throws(() => readTar(Buffer.concat([header('f', 4096), Buffer.alloc(512)])), /cut short/);
    assert.throws(() => readTar(Buffer.concat([header('f', 0)])), /end-of-archive/);
    assert.throws(() => readTar(Buffer.from('not a tar archive'.padEnd(600))), /not a ustar header/);
  });
});
