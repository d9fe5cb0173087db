// `talon skills new <name>`: a standalone AssemblyScript skill project made from
// skills/template with a copy of the SDK under assembly/talon/, so it builds offline
// with nothing but the repository's AssemblyScript compiler.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const SKILLS_ROOT = resolve(import.meta.dirname);
export const SDK_DIR = join(SKILLS_ROOT, 'sdk', 'assembly');
export const TEMPLATE_DIR = join(SKILLS_ROOT, 'template');

export class ScaffoldError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScaffoldError';
  }
}

/** Creates `dir` as a new skill project named `name`. Refuses to write into a non-empty directory. */
export function scaffoldSkill(name: string, dir: string): { files: string[] } {
  if (!/^[a-z][a-z0-9-]{0,62}[a-z0-9]$|^[a-z]$/.test(name)) {
    throw new ScaffoldError(`"${name}" is not a skill name: use 1-64 characters of a-z, 0-9 and "-", starting with a letter`);
  }
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new ScaffoldError(`${dir} exists and is not empty; choose a new directory`);
  mkdirSync(join(dir, 'assembly', 'talon'), { recursive: true });
  const manifest = JSON.parse(readFileSync(join(TEMPLATE_DIR, 'skill.json'), 'utf8')) as Record<string, unknown>;
  manifest.name = name;
  writeFileSync(join(dir, 'skill.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  cpSync(join(TEMPLATE_DIR, 'assembly', 'index.ts'), join(dir, 'assembly', 'index.ts'));
  const files = ['skill.json', 'assembly/index.ts'];
  for (const f of readdirSync(SDK_DIR)) {
    if (!f.endsWith('.ts')) continue;
    cpSync(join(SDK_DIR, f), join(dir, 'assembly', 'talon', f));
    files.push(`assembly/talon/${f}`);
  }
  writeFileSync(join(dir, '.gitignore'), 'build/\n');
  return { files };
}
