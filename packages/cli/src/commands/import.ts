// `talon import openclaw DIR`: moves an OpenClaw installation's credentials into the vault
// (through the vault's admin API, as `talon secrets set` does), its memory Markdown into a
// user's memory documents (through an orchestrator, as `talon memory` does), and prints the
// settings for the env file. Without --apply it only prints the plan. Never prints a value:
// values go from the files to the vault call and nowhere else, and every line printed is
// checked against them before it is written.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { askConversations } from '@talon/kit/conversations';
import { TalonError } from '@talon/kit/errors';
import { Placement, type SecretPolicy } from '@talon/proto';
import { CliError, withAdminNats } from '../context.ts';
import { planOpenClawImport, placementOf, readOpenClawDir, type ImportPlan, type PlannedSecret } from '../import/openclaw.ts';
import { USER_ID } from '../tokens.ts';
import { vaultAdmin } from './vault.ts';

interface ImportOptions {
  user?: string;
  apply?: boolean;
  replaceSecrets?: boolean;
}

function placementText(s: PlannedSecret): string {
  if (s.placement === 'verify') return 'verification key (never sent anywhere)';
  return `${s.field ? `${s.placement} ${s.field}` : s.placement} to ${s.hosts.join(', ')}`;
}

function policyOf(s: PlannedSecret): SecretPolicy {
  const placement = placementOf(s);
  return {
    hosts: s.hosts,
    placement: placement ?? Placement.PLACEMENT_UNSPECIFIED,
    field: s.field,
    principals: s.principals,
    expiresAtMs: 0,
    ...(placement === undefined ? { verifyOnly: true } : {}),
  };
}

/** The plan as the operator reads it; `status` says per secret what --apply did or would do. Pure. */
export function planText(
  dir: string,
  plan: ImportPlan,
  o: { apply: boolean; user?: string | undefined; status: ReadonlyMap<string, string>; docStatus: ReadonlyMap<string, string> },
): string[] {
  const out: string[] = [];
  out.push(
    o.apply
      ? `Imported the OpenClaw state in ${dir}.`
      : `OpenClaw state in ${dir}: the plan (nothing changed; run again with --apply to import).`,
  );
  if (plan.settings.length > 0) {
    out.push('', 'Settings: add these lines to the env file talon reads (.env where you run talon, or the services’ environment):');
    for (const s of plan.settings) out.push(`  ${s}`);
  }
  if (plan.models.length > 0) {
    out.push('', 'Models (TALON_LLM_MODELS; the first is the default, providers tried in order):');
    for (const m of plan.models) out.push(`  ${m}`);
  }
  out.push('', `Secrets → the vault (values never shown)${plan.secrets.length === 0 ? ': none found' : ':'}`);
  for (const s of plan.secrets) {
    out.push(
      `  ${(o.status.get(s.name) ?? 'store').padEnd(9)} ${s.name}: ${s.what}, ${placementText(s)} for ${s.principals.join(', ')} (from ${s.from})`,
    );
  }
  if (plan.documents.length > 0) {
    out.push('', `Memory documents → user ${o.user}:`);
    for (const d of plan.documents)
      out.push(`  ${(o.docStatus.get(d.key) ?? 'add').padEnd(9)} ${d.key} (from ${d.from}, ${d.content.length} characters)`);
  }
  if (plan.notImported.length > 0) {
    out.push('', 'Not imported:');
    for (const n of plan.notImported) out.push(`  - ${n}`);
  }
  out.push('', 'Files read:');
  for (const f of plan.filesRead) out.push(`  ${f}${plan.credentialFiles.includes(f) ? '   (holds credentials in plaintext)' : ''}`);
  if (plan.credentialFiles.length > 0 || plan.unreadCredentialFiles.length > 0) {
    out.push(
      '',
      o.apply
        ? 'Once Talon works, shred the plaintext credentials OpenClaw kept (e.g. shred -u FILE):'
        : 'After --apply, once Talon works, shred the plaintext credentials OpenClaw kept (e.g. shred -u FILE):',
    );
    for (const f of plan.credentialFiles) out.push(`  ${resolve(dir, f)}`);
    for (const f of plan.unreadCredentialFiles) out.push(`  ${resolve(dir, f)}   (not read)`);
  }
  return out;
}

async function existingSecrets(): Promise<Map<string, number> | undefined> {
  try {
    const r = await vaultAdmin((c) => c.listSecrets, {});
    return new Map(r.secrets.map((s) => [s.name, s.version]));
  } catch {
    return undefined;
  }
}

export function registerImport(program: Command): void {
  const imp = program.command('import').description('bring another agent platform’s state into Talon');

  imp
    .command('openclaw')
    .description(
      'import an OpenClaw state directory (~/.openclaw): credentials into the vault, memory Markdown into a user’s memory, settings for the env file. Without --apply, only prints the plan',
    )
    .argument('<dir>', 'the OpenClaw state directory (the one holding openclaw.json)')
    .option('--user <id>', 'the Talon user who gets the memory documents (MEMORY.md, USER.md, memory/*.md)')
    .option('--apply', 'carry the plan out (default: print it and change nothing)')
    .option('--replace-secrets', 'store a new version of secrets the vault already holds (default: keep them)')
    .addHelpText(
      'after',
      `
What goes where:
  models and providers   → TALON_LLM_MODELS (printed for your env file), keys → vault secrets <provider>_api_key
  Telegram, Discord, Slack → TALON_CHANNELS (printed), tokens → the vault secrets the gateway expects
  MEMORY.md, USER.md, memory/*.md → memory documents of --user (keys openclaw:…; a second run changes nothing)
  skills, OAuth logins, WhatsApp, agent instructions → listed as not imported, with the reason

Values are read from the files and sent only to the vault; none is printed. The command
lists the files it read and those holding plaintext credentials, to shred once Talon works.
A second --apply keeps secrets already stored (--replace-secrets stores new versions) and
leaves unchanged documents as they are.

Examples:
  talon import openclaw ~/.openclaw --user alice
  talon import openclaw ~/.openclaw --user alice --apply`,
    )
    .action(async (dirArg: string, o: ImportOptions) => {
      if (o.user !== undefined && !USER_ID.test(o.user))
        throw new CliError('--user must name a Talon user (1-64 of a-z, 0-9, . _ -; see talon users list)');
      const dir = resolve(dirArg);
      let plan: ImportPlan;
      try {
        plan = planOpenClawImport(readOpenClawDir(dir), { user: o.user });
      } catch (err) {
        // Messages name files and places only (parse errors never quote the text).
        throw new CliError(`cannot import ${dir}: ${(err as Error).message}`);
      }
      const status = new Map<string, string>();
      const docStatus = new Map<string, string>();
      const have = plan.secrets.length > 0 ? await existingSecrets() : new Map<string, number>();
      if (o.apply) {
        if (plan.secrets.length > 0 && !have) await vaultAdmin((c) => c.listSecrets, {}); // fails with the vault's advice
        for (const s of plan.secrets) {
          if (have?.has(s.name) && !o.replaceSecrets) {
            status.set(s.name, 'kept');
            continue;
          }
          const value = plan.values.bytes(s.name);
          try {
            const info = await vaultAdmin((c) => c.setSecret, { name: s.name, value, policy: policyOf(s) });
            status.set(s.name, info.version > 1 ? `stored v${info.version}` : 'stored');
          } finally {
            value.fill(0);
          }
        }
        if (plan.documents.length > 0) {
          await withAdminNats(async (nc) => {
            for (const d of plan.documents) {
              try {
                const r = await askConversations(nc, 'document', {
                  userId: o.user!,
                  key: d.key,
                  title: d.title,
                  content: d.content,
                  source: 'user',
                  origin: undefined,
                });
                docStatus.set(d.key, r.changed ? 'stored' : 'unchanged');
              } catch (err) {
                if (err instanceof TalonError)
                  throw new CliError(`memory document ${d.key} (from ${d.from}): ${err.message} (${err.code})`);
                throw err;
              }
            }
          });
        }
      } else if (have) {
        for (const s of plan.secrets) status.set(s.name, have.has(s.name) ? (o.replaceSecrets ? 'replace' : 'keep') : 'store');
      }
      const text = planText(dir, plan, { apply: o.apply === true, user: o.user, status, docStatus }).join('\n');
      // A last guard: the plan never holds a value in printable fields, and nothing printed may contain one.
      if (plan.values.leaksInto(text))
        throw new CliError('refusing to print the plan: it would show a credential value (a bug; please report it)');
      console.log(text);
    });
}
