// Writes .env.example from the config specs every service declares, so every
// variable is documented in one place and the file cannot drift (--check in CI).
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SERVICES } from '@talon/kit/service';
import type { Field } from '@talon/kit/config';

const root = resolve(import.meta.dirname, '..');
const check = process.argv.includes('--check');

/** Platform-level variables read by `talon up` and the CLI rather than by one service. */
const PLATFORM: Array<{ key: string; doc: string; def?: string }> = [
  {
    key: 'TALON_DATABASE_URL',
    doc: 'PostgreSQL server (with pgvector) to use instead of the embedded PGlite; an owner/superuser URL: talon up creates one role and schema per owning service.',
  },
  {
    key: 'TALON_NATS_PORT',
    doc: 'Port of the nats-server talon up starts; unset: a free one (the CLI finds it in TALON_HOME/run/platform.json).',
  },
  {
    key: 'TALON_VAULT_ADDR',
    doc: "host:port of the vault for the talon CLI's admin commands (e.g. vault:7404 in an admin container); default: the vault of the talon up running under TALON_HOME.",
  },
  { key: 'TALON_NATS_SERVER_BIN', doc: 'Path to nats-server when it is not on PATH.' },
  { key: 'TALON_PGLITE_PORT', doc: 'Port of the embedded PostgreSQL (PGlite) server talon up starts; unset: a free one.' },
  {
    key: 'TALON_PGLITE_TEMPLATE_DIR',
    doc: "Where the embedded database keeps the pristine cluster a new TALON_HOME is restored from (initdb's result, saved by the first start; ≈3.5 s less per cold start); off: initdb every time.",
    def: 'node_modules/.cache/talon-pgdata',
  },
  {
    key: 'TALON_LOG_MAX_BYTES',
    doc: 'talon up: size at which TALON_HOME/logs/<name>.log is rotated to <name>.log.1 (containers log to stdout instead).',
    def: '10485760',
  },
  { key: 'TALON_LOG_FILES', doc: 'talon up: rotated log files kept per process (<name>.log.1 … .N).', def: '5' },
  {
    key: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    doc: 'OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318); traces and metrics are exported only when set (metrics are always served on GET /metrics of the internal ports).',
  },
  {
    key: 'OTEL_METRIC_EXPORT_INTERVAL',
    doc: 'Milliseconds between OTLP metric exports (when OTEL_EXPORTER_OTLP_ENDPOINT is set).',
    def: '60000',
  },
  { key: 'OTEL_SERVICE_NAME', doc: 'Set per process by talon up to the service name; override only when running a service yourself.' },
  { key: 'TALON_TEST_DATABASE', doc: 'Tests only: embedded (default) or native.', def: 'embedded' },
  {
    key: 'TALON_TEST_DATABASE_URL',
    doc: 'Tests only: admin URL of the PostgreSQL server used when TALON_TEST_DATABASE=native.',
    def: 'postgres://postgres@127.0.0.1:5432/postgres',
  },
  { key: 'TALON_TEST_LOG_LEVEL', doc: 'Tests only: log level of the services a test platform starts.', def: 'info' },
  { key: 'TALON_TEST_KEEP_HOME', doc: "Tests only: 1 keeps each test platform's TALON_HOME (logs, database) for inspection.", def: '0' },
];

// The naming rule (docs/architecture.md, "Names"): a variable that one service reads
// is `<SERVICE>_*` (its folder under services/, upper-cased); one that several
// services read, or the platform itself (talon up, the CLI, tests), is `TALON_*`.
// talon up relies on it: it hands `<SERVICE>_*` to that service only and `TALON_*` to
// every service. Third-party names (OTEL_*) keep theirs.

/** Read by one service and by the platform too, so `TALON_*` by the rule. */
const ALSO_READ_BY_PLATFORM: Record<string, string> = {
  TALON_GATEWAY_PORT: 'talon up chooses the port and reports it',
  TALON_VAULT_PASSPHRASE: 'talon up hands it to the vault only',
  TALON_LLM_MODEL: 'talon up shows it at start',
};

/** Names that break the rule and are kept: renaming one would break existing deployments (or, for the orchestrator, its code). */
const KEPT_NAMES: Record<string, string> = {
  TALON_CHANNELS: 'gateway only; public (README.md)',
  TALON_EGRESS_ALLOW_PRIVATE: 'egress only; public (README.md)',
  TALON_SYSTEM_PROMPT: 'orchestrator only; declared in services/orchestrator/src/config.ts',
};

/** Every variable that breaks the rule and is not listed above, and every stale entry in the lists. */
function nameProblems(readers: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const problems: string[] = [];
  for (const p of PLATFORM) {
    if (!/^(TALON|OTEL)_/.test(p.key)) problems.push(`${p.key}: read by the platform, so it must start with TALON_`);
  }
  for (const [key, services] of readers) {
    const [only] = services;
    const ok =
      services.size > 1
        ? key.startsWith('TALON_')
        : key.startsWith(`${only!.toUpperCase()}_`) || (key.startsWith('TALON_') && key in ALSO_READ_BY_PLATFORM);
    if (ok && key in KEPT_NAMES) problems.push(`${key}: follows the rule now; remove it from KEPT_NAMES`);
    if (ok || key in KEPT_NAMES) continue;
    problems.push(
      services.size > 1
        ? `${key}: read by ${[...services].join(', ')}, so it must start with TALON_`
        : `${key}: read by ${only} only, so it must start with ${only!.toUpperCase()}_`,
    );
  }
  for (const key of [...Object.keys(ALSO_READ_BY_PLATFORM), ...Object.keys(KEPT_NAMES)]) {
    if (!readers.has(key)) problems.push(`${key}: no service reads it any more; remove it from scripts/env-example.ts`);
  }
  return problems;
}

async function render(): Promise<string> {
  const seen = new Map<string, string>();
  const out: string[] = [
    '# Talon configuration. Every variable any Talon process reads is listed here once,',
    '# with its default. Copy to .env (talon up reads it) or export the ones you need.',
    '# talon up gives each internal listener (NATS, PGlite, gRPC, internal HTTP, egress proxy) a free',
    '# port unless its variable is set; the port defaults below apply to a service run on its own.',
    "# Generated by `npm run env:gen` from the services' config specs; do not edit by hand.",
    '',
    '## Platform (talon up, CLI)',
  ];
  const line = (key: string, doc: string, def: string | undefined, secret = false) => {
    out.push(`# ${doc}${secret ? ' (secret: never logged)' : ''}`);
    out.push(`# ${key}=${def ?? ''}`);
  };
  for (const p of PLATFORM) {
    line(p.key, p.doc, p.def);
    seen.set(p.key, 'platform');
  }
  // Defaults that depend on TALON_HOME are shown for the default home.
  const env = { TALON_HOME: '.talon' };
  const perService = new Map<string, Field<unknown>[]>();
  const count = new Map<string, number>();
  for (const svc of SERVICES) {
    const mod = (await import(join(root, 'services', svc, 'src', 'config.ts'))) as Record<string, unknown>;
    const specFn = Object.entries(mod).find(([k, v]) => k.endsWith('Spec') && typeof v === 'function')?.[1] as
      ((e: Record<string, string>) => Record<string, Field<unknown>>) | undefined;
    if (!specFn) throw new Error(`services/${svc}/src/config.ts exports no *Spec function`);
    const fields = Object.values(specFn(env));
    perService.set(svc, fields);
    for (const f of fields) count.set(f.key, (count.get(f.key) ?? 0) + 1);
  }
  const readers = new Map<string, Set<string>>();
  for (const [svc, fields] of perService) for (const f of fields) readers.set(f.key, (readers.get(f.key) ?? new Set()).add(svc));
  const problems = nameProblems(readers);
  if (problems.length > 0) {
    console.error(
      `Variable names that break the naming rule (docs/architecture.md, "Names"):\n  ${problems.join('\n  ')}\n` +
        'Name the variable after the one service that reads it (<SERVICE>_*), or TALON_* when several do.',
    );
    process.exit(1);
  }
  const emit = (title: string, fields: Field<unknown>[]) => {
    // Several services read a shared variable: keep its first field only.
    const own: Field<unknown>[] = [];
    for (const f of fields) if (!seen.has(f.key) && !own.some((o) => o.key === f.key)) own.push(f);
    if (own.length === 0) return;
    out.push('', `## ${title}`);
    for (const f of own) {
      line(f.key, f.doc, f.defaultText?.replace(resolve('.talon'), '.talon'), f.secret);
      seen.set(f.key, title);
    }
  };
  // Variables several services read are documented once, first.
  emit(
    'shared by several services',
    [...perService.values()].flat().filter((f) => (count.get(f.key) ?? 0) > 1),
  );
  for (const [svc, fields] of perService) emit(svc, fields);
  out.push('');
  return out.join('\n');
}

const text = await render();
const file = join(root, '.env.example');
if (check) {
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    /* missing */
  }
  if (current !== text) {
    console.error('.env.example is out of date with the config specs. Run `npm run env:gen` and commit it.');
    process.exit(1);
  }
  console.log('.env.example matches the config specs');
} else {
  writeFileSync(file, text);
  console.log('wrote .env.example');
}
