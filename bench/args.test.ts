// Bench options: --help prints the script's opening comment; a mistyped option exits 64
// with that text on stderr; good options parse as parseArgs parses them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { usageOf } from './args.ts';

const script = join(import.meta.dirname, 'scale.ts');
const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('bench options', () => {
  it('takes the opening comment of a script, and only it', () => {
    assert.equal(
      usageOf('// what it measures\n//   npm run bench:x [-- --n 3]\nimport x;\n// later'),
      'what it measures\n  npm run bench:x [-- --n 3]',
    );
    assert.equal(usageOf('import x;\n// later'), '');
  });

  it('prints the usage for --help and exits 0 before starting anything', () => {
    const r = run('--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /npm run bench:scale/);
  });

  it('exits 64 naming an unknown option, with the usage, and no stack trace', () => {
    const r = run('--turnz', '5');
    assert.equal(r.status, 64);
    assert.match(r.stderr, /^scale\.ts: Unknown option '--turnz'/);
    assert.match(r.stderr, /npm run bench:scale/);
    assert.doesNotMatch(r.stderr, /at parseArgs|node:internal/);
  });
});
