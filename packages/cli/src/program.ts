// The `talon` program shared by both entries (./cli.ts with every command, ./cli-up.ts
// with `up` alone): its name and help, the .env file, and how errors end the process.
import { existsSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { CliError } from './context.ts';

export function createProgram(): Command {
  // Operators may keep settings in a .env file next to where they run talon; real
  // environment variables win.
  if (existsSync('.env')) process.loadEnvFile('.env');
  return new Command()
    .name('talon')
    .description(
      'Talon: a self-hosted AI agent platform that keeps credentials out of the model’s reach.\nState lives in TALON_HOME (default ./.talon).',
    )
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
}

export async function runProgram(program: Command): Promise<void> {
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
}
