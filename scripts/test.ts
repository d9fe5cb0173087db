// The test command (`npm test`): unit tests next to the code (bench/ helpers included), integration tests
// per service (services/*/test), then end-to-end and security suites under test/.
//   npm test                      every tier, embedded database
//   npm test -- unit e2e          chosen tiers
//   TALON_TEST_DATABASE=native npm test    against the PostgreSQL server (TALON_TEST_DATABASE_URL)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { cpus } from 'node:os';

const root = resolve(import.meta.dirname, '..');
const TIERS = ['unit', 'integration', 'e2e', 'security'] as const;
type Tier = (typeof TIERS)[number];

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function tierOf(file: string): Tier {
  const rel = relative(root, file);
  if (rel.startsWith('test/security/')) return 'security';
  if (rel.startsWith('test/')) return 'e2e';
  if (/^services\/[^/]+\/test\//.test(rel)) return 'integration';
  return 'unit';
}

const args = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const wanted = new Set<Tier>(args.length > 0 ? (args as Tier[]) : TIERS);
for (const t of wanted)
  if (!TIERS.includes(t)) {
    console.error(`unknown tier ${t}; choose from ${TIERS.join(', ')}`);
    process.exit(64);
  }

const files = [...walk(join(root, 'packages')), ...walk(join(root, 'services')), ...walk(join(root, 'bench')), ...walk(join(root, 'test'))];
const byTier = new Map<Tier, string[]>(TIERS.map((t) => [t, []]));
for (const f of files) byTier.get(tierOf(f))!.push(f);

console.log(`talon tests: database=${process.env.TALON_TEST_DATABASE ?? 'embedded'}`);
let failed = false;
for (const tier of TIERS) {
  if (!wanted.has(tier)) continue;
  const list = byTier.get(tier)!.sort();
  if (list.length === 0) continue;
  // Platform suites each start NATS, a database and six services: two at a time on two cores.
  const concurrency = tier === 'unit' ? Math.max(2, cpus().length) : 2;
  console.log(`\n== ${tier}: ${list.length} file(s), concurrency ${concurrency}`);
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    [
      '--test',
      `--test-concurrency=${concurrency}`,
      '--test-reporter=spec',
      `--test-timeout=${tier === 'unit' ? 60_000 : 600_000}`,
      ...list.map((f) => relative(root, f)),
    ],
    { cwd: root, stdio: 'inherit', env: process.env },
  );
  console.log(`== ${tier}: ${r.status === 0 ? 'passed' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
