// `talon skills ...`: the publisher side (keygen, new, sign) and the operator side
// (trust, install, approve, revoke, list). Install verifies everything before storing;
// nothing runs until an operator approves the exact binary.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { SkillStatus, type SkillRecord } from '@talon/proto';
// The skill package format and registry are @talon/records/skills; the sandbox runs the
// very same checks, so install-time and run-time checks cannot drift apart.
import {
  DEFAULT_INSTALL_LIMITS,
  RegistryError,
  SkillAdmin,
  SkillPackageError,
  describePermissions,
  generatePublisherKey,
  parseSkillId,
  publisherKeyId,
  readPackageDir,
  signPackageDir,
  skillId,
  statusName,
} from '@talon/records/skills';
import { scaffoldSkill, ScaffoldError } from '../../../../skills/scaffold.ts';
import { CliError, withAdminNats } from '../context.ts';

/** Turns the library's named errors into CLI errors with the refusal reason up front. */
async function cli<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SkillPackageError) throw new CliError(`refused (${err.reason}): ${err.message}`);
    if (err instanceof RegistryError) throw new CliError(err.message);
    if (err instanceof ScaffoldError) throw new CliError(err.message);
    throw err;
  }
}

function idArg(id: string): { name: string; version: string } {
  const parsed = (() => {
    try {
      return parseSkillId(id);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  })();
  if (!parsed.version) throw new CliError(`name the version too: ${parsed.name}@<version> (see \`talon skills list\`)`);
  return parsed;
}

function installLimits() {
  const n = (k: string, d: number) => (process.env[k] && /^\d+$/.test(process.env[k]!) ? Number(process.env[k]) : d);
  return {
    memoryCapMb: n('SANDBOX_MAX_MEMORY_MB', DEFAULT_INSTALL_LIMITS.memoryCapMb),
    maxModuleBytes: n('SANDBOX_MAX_MODULE_BYTES', DEFAULT_INSTALL_LIMITS.maxModuleBytes),
  };
}

function describeRecord(r: SkillRecord, out: (l: string) => void): void {
  out(`  ${skillId(r.name, r.version)}  ${r.description}`);
  out(`  binary:    sha256 ${r.sha256} (${r.wasmSize} bytes, memory up to ${(r.moduleMaxPages * 64) / 1024} MiB)`);
  out(`  publisher: ${r.publisherKey} (key id ${publisherKeyId(r.publisherKey)})`);
  out(`  imports:   ${r.imports.length ? r.imports.join(', ') : 'none'}`);
  if (r.requested) for (const l of describePermissions(r.requested)) out(`  ${l}`);
}

export function registerSkills(program: Command): void {
  const skills = program
    .command('skills')
    .description('WebAssembly skills: publish (keygen, new, sign) and operate (trust, install, approve, revoke, list)');

  skills
    .command('keygen')
    .description('create an Ed25519 publisher key pair; prints the public key to give operators')
    .requiredOption('--out <file>', 'where to write the private key (PEM, mode 0600)')
    .option('--force', 'overwrite an existing file')
    .action(async (o: { out: string; force?: boolean }) => {
      const file = resolve(o.out);
      if (existsSync(file) && !o.force)
        throw new CliError(`${file} exists; pass --force to replace it (the old key's signatures stay valid only while trusted)`);
      const { privateKeyPem, publicKey } = generatePublisherKey();
      writeFileSync(file, privateKeyPem, { mode: 0o600 });
      process.stderr.write(
        `Private key written to ${file} (keep it secret). Operators trust your skills with:\n  talon skills trust ${publicKey}\n`,
      );
      process.stdout.write(`${publicKey}\n`);
    });

  skills
    .command('new')
    .description('create a new AssemblyScript skill project from the template')
    .argument('<name>', 'skill name (a-z, 0-9, -)')
    .option('--dir <dir>', 'directory to create (default: ./<name>)')
    .action(async (name: string, o: { dir?: string }) => {
      const dir = resolve(o.dir ?? name);
      const { files } = await cli(() => scaffoldSkill(name, dir));
      console.log(`Created skill ${name} in ${dir}:`);
      for (const f of files) console.log(`  ${f}`);
      console.log(`Next: edit assembly/index.ts and skill.json, then (from the Talon repository)
  node skills/build.ts ${dir}
  talon skills sign ${dir}/build --key <publisher key>
  talon skills install ${dir}/build`);
    });

  skills
    .command('sign')
    .description('sign a skill package directory (skill.json + skill.wasm) and write skill.sig')
    .argument('<dir>', 'package directory, e.g. <project>/build')
    .requiredOption('--key <file>', 'publisher private key (from `talon skills keygen`)')
    .action(async (dir: string, o: { key: string }) => {
      if (!existsSync(o.key)) throw new CliError(`no key file ${o.key}; create one with \`talon skills keygen --out ${o.key}\``);
      const sig = await cli(() => signPackageDir(resolve(dir), readFileSync(o.key, 'utf8')));
      const pkg = readPackageDir(resolve(dir));
      const m = JSON.parse(pkg.manifestText) as { name: string; version: string };
      console.log(`Signed ${skillId(m.name, m.version)} as ${sig.publicKey}; wrote ${resolve(dir, 'skill.sig')}`);
    });

  skills
    .command('trust')
    .description('trust a publisher key: skills it signs can be installed (each still needs approval)')
    .argument('<pubkey>', 'ed25519:<base64url>, as printed by `talon skills keygen`')
    .option('--label <text>', 'who this key belongs to', '')
    .action(async (key: string, o: { label: string }) => {
      const p = await cli(() => withAdminNats((nc) => new SkillAdmin(nc).trust(key, o.label)));
      console.log(`Trusted publisher ${p.keyId}${p.label ? ` (${p.label})` : ''}: ${p.key}`);
    });

  skills
    .command('untrust')
    .description('stop trusting a publisher key; skills it signed stop running at once')
    .argument('<key-or-id>', 'the public key or its 16-digit key id')
    .action(async (key: string) => {
      const p = await cli(() => withAdminNats((nc) => new SkillAdmin(nc).untrust(key)));
      console.log(`No longer trusting ${p.keyId}${p.label ? ` (${p.label})` : ''}.`);
    });

  skills
    .command('publishers')
    .description('list trusted publisher keys')
    .action(async () => {
      const all = await withAdminNats((nc) => new SkillAdmin(nc).publishers());
      if (all.length === 0) console.log('No trusted publishers. Add one with: talon skills trust <pubkey>');
      for (const p of all) console.log(`${p.keyId}  ${p.key}  ${p.label}  added ${new Date(p.addedAtMs).toISOString()}`);
    });

  skills
    .command('install')
    .description('verify a signed skill package and record it as pending (nothing runs until approved)')
    .argument('<path>', 'package directory holding skill.json, skill.wasm and skill.sig')
    .action(async (path: string) => {
      const pkg = await cli(() => readPackageDir(resolve(path)));
      const res = await cli(() => withAdminNats((nc) => new SkillAdmin(nc).install(pkg, installLimits())));
      const id = skillId(res.record.name, res.record.version);
      if (res.outcome === 'unchanged') {
        console.log(`${id} is already installed with this exact binary (status: ${statusName(res.record.status)}).`);
        return;
      }
      if (res.outcome === 'replaced') {
        process.stderr.write(
          `warning: ${id} was installed with another binary (sha256 ${res.previousSha256}, ${statusName(res.previousStatus ?? SkillStatus.SKILL_STATUS_UNSPECIFIED)}); ` +
            `this binary replaces it and needs a new approval.\n`,
        );
      }
      console.log(`Installed ${id} (pending). It asks for:`);
      describeRecord(res.record, (l) => console.log(l));
      console.log(`Grant these permissions with: talon skills approve ${id}`);
    });

  skills
    .command('approve')
    .description('grant an installed skill the permissions its signed manifest requests')
    .argument('<name@version>')
    .action(async (id: string) => {
      const { name, version } = idArg(id);
      const by = (() => {
        try {
          return userInfo().username;
        } catch {
          return 'operator';
        }
      })();
      const r = await cli(() => withAdminNats((nc) => new SkillAdmin(nc).approve(name, version, by)));
      console.log(`Approved ${skillId(name, version)} (sha256 ${r.sha256}) with:`);
      if (r.approved) for (const l of describePermissions(r.approved)) console.log(`  ${l}`);
      if (r.approved?.secrets.length)
        console.log(`Egress injects the secrets above only towards the skill's approved hosts; store them with \`talon secrets set\`.`);
    });

  skills
    .command('revoke')
    .description('stop a skill version from running (takes effect on its next call)')
    .argument('<name@version>')
    .option('--reason <text>', 'why (kept in the record)', '')
    .action(async (id: string, o: { reason: string }) => {
      const { name, version } = idArg(id);
      await cli(() => withAdminNats((nc) => new SkillAdmin(nc).revoke(name, version, o.reason)));
      console.log(`Revoked ${skillId(name, version)}.`);
    });

  skills
    .command('list')
    .description('list installed skills with their status and permissions')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      const all = await withAdminNats((nc) => new SkillAdmin(nc).list());
      if (o.json) {
        console.log(
          JSON.stringify(
            all.map((r) => ({
              id: skillId(r.name, r.version),
              status: statusName(r.status),
              sha256: r.sha256,
              publisher: r.publisherKey,
              requested: r.requested,
              approved: r.approved,
            })),
            null,
            2,
          ),
        );
        return;
      }
      if (all.length === 0) {
        console.log('No skills installed. Install one with: talon skills install <package dir>');
        return;
      }
      for (const r of all) {
        console.log(
          `${skillId(r.name, r.version).padEnd(32)} ${statusName(r.status).padEnd(9)} ${r.sha256.slice(0, 12)}  ${r.description.slice(0, 70)}`,
        );
        const p = r.status === SkillStatus.SKILL_STATUS_APPROVED ? r.approved : r.requested;
        if (p) console.log(`${''.padEnd(33)}${describePermissions(p).slice(0, 2).join('; ')}`);
      }
    });
}
