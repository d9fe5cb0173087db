// Keys never land where `git add -A` would commit them: a Talon home inside a git
// work tree must be ignored there (deploy/state, deploy/k8s/state and .talon are, by
// the repository's .gitignore). Asks git itself, so every .gitignore, info/exclude
// and global excludes file counts.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** The work tree that would track files written into `home`, or undefined when none would (outside any work tree, or ignored). */
export function trackingWorkTree(home: string): string | undefined {
  let dir = resolve(home);
  while (!existsSync(dir)) dir = dirname(dir);
  const top = spawnSync('git', ['-C', dir, 'rev-parse', '--show-toplevel'], { encoding: 'utf8' });
  // Not a work tree (or no git at all): nothing would commit the keys.
  if (top.error || top.status !== 0) return undefined;
  const root = top.stdout.trim();
  // A key file as `talon init` writes it: ignored only if git says so (exit 0).
  const probe = relative(root, join(resolve(home), 'pki', 'ca.key'));
  const ignored = spawnSync('git', ['-C', root, 'check-ignore', '-q', '--', probe]);
  return ignored.status === 0 ? undefined : root;
}

export class UnignoredHomeError extends Error {
  constructor(home: string, workTree: string) {
    const rel = relative(workTree, resolve(home)) || '.';
    super(
      `${resolve(home)} is inside the git work tree ${workTree} and git does not ignore it: the CA key, service keys and ` +
        `NATS seeds written there would be committed by \`git add -A\`. Add \`/${rel}/\` to ${join(workTree, '.gitignore')}, ` +
        'or set TALON_HOME to a folder outside the work tree.',
    );
    this.name = 'UnignoredHomeError';
  }
}

/** Throws UnignoredHomeError when key material written into `home` would be tracked by git. */
export function assertHomeUntracked(home: string): void {
  const tree = trackingWorkTree(home);
  if (tree) throw new UnignoredHomeError(home, tree);
}
