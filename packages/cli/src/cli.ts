// The `talon` command line (started by bin.ts). Every command has --help.
import { existsSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CliError } from './context.ts';
import { registerDb } from './commands/db.ts';
import { registerApprovals } from './commands/approvals.ts';
import { registerAudit } from './commands/audit.ts';
import { registerEgress } from './commands/egress.ts';
import { registerHealth } from './commands/health.ts';
import { registerMemory } from './commands/memory.ts';
import { registerMcp } from './commands/mcp.ts';
import { registerPairing } from './commands/pairing.ts';
import { registerRoutines } from './commands/routines.ts';
import { registerInit } from './commands/init.ts';
import { registerProvision } from './commands/provision.ts';
import { registerSkills } from './commands/skills.ts';
import { registerSecrets } from './commands/secrets.ts';
import { registerVault } from './commands/vault.ts';
import { registerToken } from './commands/token.ts';
import { registerUsers } from './commands/users.ts';
import { registerUp } from './commands/up.ts';

// Operators may keep settings in a .env file next to where they run talon; real
// environment variables win.
if (existsSync('.env')) process.loadEnvFile('.env');

const program = new Command();
program
  .name('talon')
  .description(
    'Talon: a self-hosted AI agent platform that keeps credentials out of the model’s reach.\nState lives in TALON_HOME (default ./.talon).',
  )
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

registerUp(program);
registerToken(program);
registerUsers(program);
registerPairing(program);
registerApprovals(program);
registerMemory(program);
registerHealth(program);
registerInit(program);
registerProvision(program);
registerDb(program);
registerSkills(program);
registerRoutines(program);
registerMcp(program);
registerEgress(program);
registerSecrets(program);
registerVault(program);
registerAudit(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  if (err instanceof CliError) {
    process.stderr.write(`talon: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`talon: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
}
