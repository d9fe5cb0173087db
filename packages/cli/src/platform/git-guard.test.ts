import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnignoredHomeError, assertHomeUntracked, trackingWorkTree } from './git-guard.ts';

// A real git repository in a temporary folder: git decides what it ignores.
describe('a Talon home inside a git work tree', () => {
  let repo: string;
  let outside: string;
  before(() => {
    repo = mkdtempSync(join(tmpdir(), 'talon-git-guard-'));
    outside = mkdtempSync(join(tmpdir(), 'talon-git-outside-'));
    execFileSync('git', ['init', '-q', repo]);
    writeFileSync(join(repo, '.gitignore'), '.talon/\ndeploy/state/\n');
  });
  after(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it('is refused when git would track the keys, with the fix in the message', () => {
    const home = join(repo, 'deploy', 'k8s', 'state');
    assert.equal(trackingWorkTree(home), repo);
    assert.throws(
      () => assertHomeUntracked(home),
      (err: Error) =>
        err instanceof UnignoredHomeError && err.message.includes('`/deploy/k8s/state/`') && err.message.includes(join(repo, '.gitignore')),
    );
  });

  it('is allowed when ignored, also before the folder exists', () => {
    assert.equal(trackingWorkTree(join(repo, 'deploy', 'state')), undefined);
    assert.equal(trackingWorkTree(join(repo, '.talon')), undefined);
    assertHomeUntracked(join(repo, '.talon'));
  });

  it('is allowed outside any work tree', () => {
    assert.equal(trackingWorkTree(join(outside, 'home')), undefined);
  });

  it('holds for the repository itself: its deploy state folders and .talon are ignored', () => {
    const root = join(import.meta.dirname, '..', '..', '..', '..');
    for (const home of ['.talon', 'deploy/state', 'deploy/k8s/state']) assert.equal(trackingWorkTree(join(root, home)), undefined, home);
  });
});
