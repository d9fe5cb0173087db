import { existsSync } from 'node:fs';
import { relative } from 'node:path';
import type { Command } from 'commander';
import { SERVICES } from '@talon/kit/service';
import { defaultPorts, Platform, type PlatformPorts } from '../platform/platform.ts';
import { NatsServerNotFound } from '../platform/nats-server.ts';
import { DATABASE_URL_FORMS, databaseUrlProblem, redactDatabaseUrl } from '@talon/kit/database-url';
import { CliError, homeDir } from '../context.ts';
import { channelsLine, enabledChannels } from '../channels-summary.ts';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The "Channels" lines: the gateway checks its channels' vault secrets right after it starts;
 * asked for up to 3 s so a channel that cannot work is named here, not at its first message.
 */
async function channelsSummary(platform: Platform): Promise<string[]> {
  let facts = await platform.gatewayFacts();
  if (enabledChannels(facts).length === 0) return [];
  for (const end = Date.now() + 3000; !channelsLine(facts).settled && Date.now() < end;) {
    await sleep(100);
    facts = await platform.gatewayFacts();
  }
  return channelsLine(facts).lines;
}

function shown(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : `./${r}`;
}

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('start NATS, the database and the six services, wait until healthy, print the URLs; Ctrl-C stops everything in order')
    .option('--database-url <url>', 'use this PostgreSQL server (with pgvector) instead of the embedded one; same as TALON_DATABASE_URL')
    .action(async (o: { databaseUrl?: string }) => {
      const started = Date.now();
      const home = homeDir();
      const databaseUrl = o.databaseUrl ?? process.env.TALON_DATABASE_URL ?? undefined;
      const problem = databaseUrl && databaseUrl.trim() !== '' ? databaseUrlProblem(databaseUrl) : undefined;
      if (problem !== undefined) throw new CliError(`--database-url (or TALON_DATABASE_URL) ${problem}; use ${DATABASE_URL_FORMS}`);
      const say = (m: string) => process.stderr.write(`  · ${m}\n`);
      process.stderr.write(`Starting Talon (state in ${shown(home)})\n`);
      let ports: PlatformPorts;
      try {
        ports = defaultPorts();
      } catch (err) {
        throw new CliError(`Talon did not start: ${(err as Error).message}`);
      }
      const platform = new Platform({
        home,
        ports,
        databaseUrl: databaseUrl && databaseUrl.trim() !== '' ? databaseUrl : undefined,
        baseEnv: process.env,
        autoRestart: true,
        onProgress: say,
        onCrash: (name, info) =>
          process.stderr.write(
            `  ! ${name} exited (code ${info.code ?? '-'}, signal ${info.signal ?? '-'}); see ${shown(platform.logFile(name))}\n`,
          ),
      });
      let stopping = false;
      const stop = async (sig: string) => {
        if (stopping) {
          process.stderr.write('Forcing exit.\n');
          platform.killAll();
          process.exit(130);
        }
        stopping = true;
        process.stderr.write(`\n${sig}: stopping Talon in order (press Ctrl-C again to force)\n`);
        await platform.stop();
        process.stderr.write('Talon stopped. Data is kept; `npm start` resumes.\n');
        process.exit(0);
      };
      process.on('SIGINT', () => void stop('SIGINT'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
      // The setup child that started the platform also answers the summary below.
      const release = platform.holdSetup();
      try {
        await platform.start(SERVICES);
      } catch (err) {
        release();
        await platform.stop().catch(() => undefined);
        if (err instanceof NatsServerNotFound) throw new CliError(err.message);
        throw new CliError(`Talon did not start: ${(err as Error).message}`);
      }
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      // The platform is up: a summary that cannot be had (the setup child gone) is no reason to stop it.
      const summary = await platform
        .summary()
        .catch((err: unknown) => {
          process.stderr.write(
            `warning: the vault status and the models could not be read (${(err as Error).message}); ` +
              '`npm run talon -- vault status` and `npm run talon -- health` ask again\n',
          );
          return { vault: undefined, models: ['unknown (see the warning above)'], keys: undefined };
        })
        .finally(release);
      const { vault: st, models, keys } = summary;
      const channels = await channelsSummary(platform);
      const vaultLine = !st
        ? 'status unknown'
        : !st.initialized
          ? 'sealed, no keyring yet: run `npm run talon -- vault unseal` to choose the passphrase'
          : st.sealed
            ? 'sealed: run `npm run talon -- vault unseal` (or start with TALON_VAULT_PASSPHRASE)'
            : `unsealed, ${st.secrets} secret${st.secrets === 1 ? '' : 's'}`;
      const out = [
        '',
        `Talon is up in ${secs} s.`,
        '',
        `  Gateway   ${platform.gatewayUrl}  (web chat at /, OpenAI-compatible API at /v1/chat/completions)`,
        ...models.map((l, i) => `  ${i === 0 ? 'Models   ' : '         '} ${l}`),
        `  Vault     ${vaultLine}`,
        ...channels.map((l, i) => `  ${i === 0 ? 'Channels ' : '         '} ${l}`),
        `  NATS      ${platform.natsUrl}`,
        `  Database  ${platform.embedded ? `embedded PostgreSQL (PGlite + pgvector) in ${shown(platform.home.pgdata)}` : redactDatabaseUrl(databaseUrl ?? '')}`,
        `  Logs      ${shown(platform.home.logs)}/<service>.log`,
        '',
        'Next steps (in another terminal):',
        '  1. Create an API token:   npm run talon -- token create --name you --scope operator',
        ...(keys === undefined
          ? ['  2. LLM keys:              see TALON_LLM_* in .env.example']
          : keys.length === 0
            ? ['  2. LLM keys:              none needed']
            : keys.map((k, i) => `  ${i === 0 ? '2. Store the LLM key:    ' : '                         '} ${k}   (value on stdin)`)),
        `  3. Chat:                  curl -s ${platform.gatewayUrl}/v1/chat/completions -H "Authorization: Bearer $TOKEN" \\`,
        `                              -H 'content-type: application/json' -d '{"messages":[{"role":"user","content":"hello"}]}'`,
        '',
        'Press Ctrl-C to stop.',
        '',
      ];
      if (!existsSync(`${home}/pki/ca.crt`)) out.push('warning: no CA found after start');
      process.stdout.write(out.join('\n'));
      // Keep running until a signal arrives.
      await new Promise(() => undefined);
    });
}
