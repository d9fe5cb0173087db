// Builds skills from source: every example under skills/examples, the malicious
// corpus under skills/malicious (the sandbox's security tests run them), and the
// `talon skills new` template (scaffolded and compiled, so it is known to build).
//
//   node skills/build.ts              build everything that is out of date
//   node skills/build.ts --force      rebuild everything
//   node skills/build.ts <dir>...     build the skill projects in <dir> (e.g. one made by `talon skills new`)
//
// A skill directory holds skill.json plus either assembly/index.ts (AssemblyScript)
// or module.wat (hand-written WebAssembly text). Output: <dir>/build/skill.json and
// <dir>/build/skill.wasm (unsigned; the publisher signs with `talon skills sign`).
// Optional <dir>/build.json: {"runtime": "incremental"|"stub"|"minimal", "maximumMemoryPages": n|null}.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SDK_DIR, SKILLS_ROOT, TEMPLATE_DIR, scaffoldSkill } from './scaffold.ts';

interface BuildConfig {
  runtime?: 'incremental' | 'stub' | 'minimal';
  /** Declared maximum memory in pages; default: the manifest's memoryMb. null: none (corpus only). */
  maximumMemoryPages?: number | null;
}

export class SkillBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SkillBuildError';
  }
}

function newestMtime(paths: string[]): number {
  let newest = 0;
  const visit = (p: string) => {
    if (!existsSync(p)) return;
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const n of readdirSync(p)) if (n !== 'build' && n !== 'node_modules') visit(join(p, n));
    } else newest = Math.max(newest, st.mtimeMs);
  };
  paths.forEach(visit);
  return newest;
}

function commonAncestor(a: string, b: string): string {
  const pa = resolve(a).split(sep);
  const pb = resolve(b).split(sep);
  const out: string[] = [];
  for (let i = 0; i < Math.min(pa.length, pb.length) && pa[i] === pb[i]; i++) out.push(pa[i]!);
  return out.join(sep) || sep;
}

async function compileAssemblyScript(dir: string, outFile: string, cfg: BuildConfig, pages: number | null): Promise<void> {
  const { default: asc } = await import('assemblyscript/asc');
  const entry = join(dir, 'assembly', 'index.ts');
  // A scaffolded project carries its own SDK copy; repository skills use skills/sdk.
  const localSdk = join(dir, 'assembly', 'talon', 'index.ts');
  const sdkIndex = existsSync(localSdk) ? localSdk : join(SDK_DIR, 'index.ts');
  const base = commonAncestor(dir, dirname(sdkIndex));
  const argv = [
    relative(base, entry),
    '--outFile',
    relative(base, outFile),
    '--baseDir',
    base,
    '--runtime',
    cfg.runtime ?? 'incremental',
    '--optimizeLevel',
    '3',
    '--shrinkLevel',
    '1',
    // The SDK's abort handler reports the message as the skill's error (no env.abort import).
    '--use',
    `abort=${relative(base, sdkIndex).replace(/\.ts$/, '').split(sep).join('/')}/talonAbort`,
    '--noColors',
  ];
  if (pages !== null) argv.push('--maximumMemory', String(pages));
  let stderr = '';
  const res = await asc.main(argv, {
    stdout: { write: () => true } as never,
    stderr: {
      write: (s: string | Uint8Array) => {
        stderr += typeof s === 'string' ? s : Buffer.from(s).toString();
        return true;
      },
    } as never,
  });
  if (res.error) throw new SkillBuildError(`AssemblyScript compilation of ${entry} failed:\n${stderr || res.error.message}`);
}

async function compileWat(dir: string, outFile: string): Promise<void> {
  const { default: wabtInit } = await import('wabt');
  const wabt = await wabtInit();
  const file = join(dir, 'module.wat');
  let mod;
  try {
    mod = wabt.parseWat(file, readFileSync(file, 'utf8'), {
      bulk_memory: true,
      multi_value: true,
      reference_types: true,
      exceptions: true,
    });
    mod.resolveNames();
    mod.validate();
  } catch (err) {
    throw new SkillBuildError(`${file}: ${(err as Error).message}`);
  }
  try {
    writeFileSync(outFile, mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** Builds one skill project into `outDir` (default <dir>/build). Returns the output directory. */
export async function buildSkill(dir: string, opts: { outDir?: string; force?: boolean } = {}): Promise<string> {
  const outDir = opts.outDir ?? join(dir, 'build');
  const manifestFile = join(dir, 'skill.json');
  if (!existsSync(manifestFile)) throw new SkillBuildError(`${dir} has no skill.json`);
  const wasmOut = join(outDir, 'skill.wasm');
  const isWat = existsSync(join(dir, 'module.wat'));
  if (!isWat && !existsSync(join(dir, 'assembly', 'index.ts')))
    throw new SkillBuildError(`${dir} has neither assembly/index.ts nor module.wat`);
  const inputs = [dir, ...(isWat ? [] : [SDK_DIR]), import.meta.filename];
  if (!opts.force && existsSync(wasmOut) && existsSync(join(outDir, 'skill.json')) && statSync(wasmOut).mtimeMs >= newestMtime(inputs)) {
    return outDir;
  }
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { permissions?: { memoryMb?: number } };
  const cfg: BuildConfig = existsSync(join(dir, 'build.json'))
    ? (JSON.parse(readFileSync(join(dir, 'build.json'), 'utf8')) as BuildConfig)
    : {};
  const pages = cfg.maximumMemoryPages === null ? null : (cfg.maximumMemoryPages ?? (manifest.permissions?.memoryMb ?? 1) * 16);
  mkdirSync(outDir, { recursive: true });
  // Write-then-rename: parallel test processes may build at the same time.
  const tmp = `${wasmOut}.${process.pid}.tmp`;
  if (isWat) await compileWat(dir, tmp);
  else await compileAssemblyScript(dir, tmp, cfg, pages);
  const tmpManifest = join(outDir, `skill.json.${process.pid}.tmp`);
  copyFileSync(manifestFile, tmpManifest);
  renameSync(tmpManifest, join(outDir, 'skill.json'));
  renameSync(tmp, wasmOut);
  return outDir;
}

function skillDirs(parent: string): string[] {
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .map((n) => join(parent, n))
    .filter((p) => statSync(p).isDirectory() && existsSync(join(p, 'skill.json')))
    .sort();
}

export const EXAMPLES_DIR = join(SKILLS_ROOT, 'examples');
export const CORPUS_DIR = join(SKILLS_ROOT, 'malicious');

/** Build output directory of a repository skill, e.g. builtSkill('examples', 'weather'). */
export function builtSkill(group: 'examples' | 'malicious' | 'template', name?: string): string {
  return group === 'template' ? join(TEMPLATE_DIR, 'build') : join(SKILLS_ROOT, group, name!, 'build');
}

/** Builds the template by scaffolding it like `talon skills new` would, proving it compiles. */
async function buildTemplate(force: boolean): Promise<string> {
  // One scaffold per process: test files running side by side on a fresh clone build it at once,
  // and a shared folder would be removed under another process's build (outputs are renamed into place).
  const project = join(TEMPLATE_DIR, 'build', `project.${process.pid}`);
  const out = join(TEMPLATE_DIR, 'build');
  const stale =
    !existsSync(join(out, 'skill.wasm')) ||
    statSync(join(out, 'skill.wasm')).mtimeMs < newestMtime([TEMPLATE_DIR, SDK_DIR, import.meta.filename]);
  if (!force && !stale) return out;
  rmSync(project, { recursive: true, force: true });
  scaffoldSkill('my-skill', project);
  try {
    return await buildSkill(project, { outDir: out, force: true });
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
}

/** Builds every repository skill (examples, corpus, template) that is out of date. */
export async function buildAll(opts: { force?: boolean; log?: (line: string) => void } = {}): Promise<string[]> {
  const built: string[] = [];
  for (const dir of [...skillDirs(EXAMPLES_DIR), ...skillDirs(CORPUS_DIR)]) {
    built.push(await buildSkill(dir, { force: opts.force }));
    opts.log?.(`built ${relative(process.cwd(), dir)}`);
  }
  built.push(await buildTemplate(opts.force ?? false));
  opts.log?.('built skills/template');
  return built;
}

/** What tests and benchmarks call first. */
export async function ensureSkillsBuilt(): Promise<void> {
  await buildAll();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const dirs = args.filter((a) => !a.startsWith('--'));
  const t0 = Date.now();
  try {
    if (dirs.length === 0) await buildAll({ force, log: (l) => console.log(l) });
    else for (const d of dirs) console.log(`built ${relative(process.cwd(), await buildSkill(resolve(d), { force: true }))}`);
    console.log(`skills: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } catch (err) {
    console.error(err instanceof SkillBuildError ? err.message : err);
    process.exit(1);
  }
}
