#!/usr/bin/env node
// `talon` entry point. The CLI is TypeScript run by Node 24's type stripping; when
// this shim is started by an older Node (a system `node` on PATH), it re-runs
// itself with the Node 24 the repository pins in node_modules.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
const major = Number(process.versions.node.split('.')[0]);
if (major >= 24) {
  // Before the first TypeScript file: a cached one is not type-stripped again, and the
  // stripper itself (≈18 MiB resident) is then never loaded. The cache sits beside the
  // code it caches (node_modules/.cache, as trusted as the code itself; not a shared
  // temporary directory another user could fill first), and the processes `talon up`
  // starts inherit it: a new TALON_HOME compiles nothing this installation compiled before.
  const cacheDir = process.env.NODE_COMPILE_CACHE || fileURLToPath(new URL('../../../node_modules/.cache/talon-compile', import.meta.url));
  const r = nodeModule.enableCompileCache?.(cacheDir);
  const { ENABLED, ALREADY_ENABLED } = nodeModule.constants?.compileCacheStatus ?? {};
  if (r && (r.status === ENABLED || r.status === ALREADY_ENABLED)) process.env.NODE_COMPILE_CACHE = cacheDir;
  await import(entry);
} else {
  let node24;
  try {
    node24 = nodeModule.createRequire(import.meta.url).resolve('node/bin/node');
  } catch {
    node24 = undefined;
  }
  if (!node24 || !existsSync(node24)) {
    console.error(
      `talon needs Node.js 24 (this is ${process.version}). Run \`npm ci\` in the repository to install the pinned Node 24, or install Node 24 LTS.`,
    );
    process.exit(1);
  }
  const r = spawnSync(node24, [entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
