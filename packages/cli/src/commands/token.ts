import type { Command } from 'commander';
import { CliError, withAdminNats } from '../context.ts';
import { createToken, listTokens, revokeToken, rotateToken, TokenSelectionError, USER_ID } from '../tokens.ts';

export function registerToken(program: Command): void {
  const token = program.command('token').description('create, list and revoke API tokens (stored hashed; shown once)');
  token
    .command('create')
    .description('create an API token and print it once')
    .requiredOption('--name <name>', 'a label for the token (e.g. laptop, alice)')
    .option('--user <id>', 'the Talon user the token acts as (default: the name, lower-cased)')
    .option('--scope <scope>', 'user or operator', 'user')
    .action(async (o: { name: string; user?: string; scope: string }) => {
      if (o.scope !== 'user' && o.scope !== 'operator') throw new CliError('--scope must be user or operator');
      const userId = o.user ?? o.name.toLowerCase();
      if (!USER_ID.test(userId)) throw new CliError(`user id "${userId}" must be 1-64 characters of a-z, 0-9, . _ - (pass --user)`);
      const { token: value, info } = await withAdminNats((nc) =>
        createToken(nc, { name: o.name, userId, scope: o.scope as 'user' | 'operator' }),
      );
      process.stderr.write(`Created ${info.scope} token "${info.name}" for user ${info.userId} (id ${info.id}). It is shown only now:\n`);
      process.stdout.write(`${value}\n`);
    });
  token
    .command('list')
    .description('list tokens (never their values)')
    .action(async () => {
      const all = await withAdminNats((nc) => listTokens(nc));
      if (all.length === 0) {
        console.log('No tokens. Create one with: talon token create --name NAME');
        return;
      }
      for (const t of all) {
        const state = t.revokedAtMs ? `revoked ${new Date(t.revokedAtMs).toISOString()}` : 'active';
        console.log(
          `${t.id}  ${t.name.padEnd(16)} user=${t.userId.padEnd(12)} scope=${t.scope.padEnd(8)} created=${new Date(t.createdAtMs).toISOString()}  ${state}`,
        );
      }
    });
  token
    .command('rotate')
    .description('replace a token with a new value (same name, user and scope); the old one stops working at once')
    .argument('<id-or-name>')
    .action(async (idOrName: string) => {
      let r;
      try {
        r = await withAdminNats((nc) => rotateToken(nc, idOrName));
      } catch (err) {
        if (err instanceof TokenSelectionError) throw new CliError(err.message);
        throw err;
      }
      process.stderr.write(
        `Rotated ${r.info.scope} token "${r.info.name}" of user ${r.info.userId}: ${r.replaced.id} is revoked, the new id is ${r.info.id}. The new token is shown only now:\n`,
      );
      process.stdout.write(`${r.token}\n`);
    });
  token
    .command('revoke')
    .description('revoke tokens by id or name; takes effect on the next request')
    .argument('<id-or-name>')
    .action(async (idOrName: string) => {
      const n = await withAdminNats((nc) => revokeToken(nc, idOrName));
      if (n === 0) throw new CliError(`no active token with id or name "${idOrName}" (see talon token list)`);
      console.log(`Revoked ${n} token${n === 1 ? '' : 's'}.`);
    });
}
