// `talon pairing list|approve|deny|revoke`: chat-platform accounts reach the agent
// only once an operator paired them with a Talon user. An unknown sender is given
// a code by the gateway; the operator approves that code here (or in the web UI).
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { TalonError } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import type { Pairing, PairingRequest } from '@talon/proto';
import { CODE_RULE, displayCode, normalizeCode as parseCode, Pairings, Users } from '@talon/records/identity';
import { CliError, withAdminNats } from '../context.ts';
import { USER_ID } from '../tokens.ts';

// Codes and decisions are the record's (@talon/records/identity), shared with the gateway's operator API.
export function normalizeCode(input: string): string {
  const c = parseCode(input);
  if (!c) throw new CliError(`"${input}" is not a pairing code (${CODE_RULE.replace(/^a pairing code is /, '')})`);
  return c;
}

const show = displayCode;

/** The record's refusals (not found, expired, decided by someone else) as CLI errors. */
async function cli<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof TalonError && err.code !== 'unavailable') throw new CliError(err.message);
    throw err;
  }
}

export async function listPairings(nc: NatsConnection): Promise<{ pending: PairingRequest[]; paired: Pairing[] }> {
  const p = await new Pairings(nc).open();
  const [pending, paired] = await Promise.all([p.pending(), p.paired()]);
  return { pending: pending.sort((a, b) => a.createdAtMs - b.createdAtMs), paired: paired.map((x) => x.pairing) };
}

/** Approves a pending code for an existing, enabled user. Compare-and-set: one decision per code. */
export async function approvePairing(nc: NatsConnection, codeInput: string, userId: string, by: string): Promise<Pairing> {
  const code = normalizeCode(codeInput);
  if (!USER_ID.test(userId)) throw new CliError(`user id "${userId}" must be 1-64 characters of a-z, 0-9, . _ -`);
  const users = await new Users(nc).open();
  const r = await cli(async () => (await new Pairings(nc).open()).approve(code, userId, by, (id) => users.get(id)));
  return r.pairing;
}

export async function denyPairing(nc: NatsConnection, codeInput: string): Promise<PairingRequest> {
  const code = normalizeCode(codeInput);
  return cli(async () => (await new Pairings(nc).open()).deny(code));
}

export async function unpair(nc: NatsConnection, channel: string, account: string): Promise<boolean> {
  return (await new Pairings(nc).open()).unpair(channel, account);
}

export function registerPairing(program: Command): void {
  const pairing = program
    .command('pairing')
    .description(
      'approve chat-platform accounts (Telegram, Slack, Discord, Matrix, WhatsApp, Mattermost, webhook senders) before they can reach the agent',
    );
  pairing
    .command('list')
    .description('pending pairing codes and paired identities')
    .action(async () => {
      const r = await withAdminNats((nc) => listPairings(nc));
      console.log(r.pending.length ? 'Pending:' : 'No pending pairing codes.');
      for (const p of r.pending) {
        console.log(
          `  ${show(p.code)}  ${p.identity?.channel}:${p.identity?.account}  "${p.identity?.displayName}"  expires ${new Date(p.expiresAtMs).toISOString()}`,
        );
      }
      console.log(r.paired.length ? 'Paired:' : 'No paired identities.');
      for (const p of r.paired) {
        console.log(
          `  ${p.identity?.channel}:${p.identity?.account}  -> ${p.userId}  (approved ${new Date(p.approvedAtMs).toISOString()} by ${p.approvedBy})`,
        );
      }
    });
  pairing
    .command('approve')
    .description('pair the sender of CODE with a Talon user')
    .argument('<code>', 'the code the sender was given, e.g. ABCD-EF23')
    .requiredOption('--user <id>', 'the Talon user the sender acts as (talon users add ID first)')
    .action(async (code: string, o: { user: string }) => {
      const p = await withAdminNats((nc) => approvePairing(nc, code, o.user, `cli:${userInfo().username}`));
      console.log(`Paired ${p.identity?.channel}:${p.identity?.account} with user ${p.userId}. They can write to the agent now.`);
    });
  pairing
    .command('deny')
    .description('refuse a pairing code (the sender gets a new code if they write again)')
    .argument('<code>')
    .action(async (code: string) => {
      const r = await withAdminNats((nc) => denyPairing(nc, code));
      console.log(`Denied ${show(r.code)} (${r.identity?.channel}:${r.identity?.account}).`);
    });
  pairing
    .command('revoke')
    .description('unpair a chat identity; its next message gets a new pairing code')
    .argument(
      '<channel>',
      'the channel as `talon pairing list` shows it: telegram, slack, discord, matrix, whatsapp, mattermost or webhook',
    )
    .argument('<account>', 'the platform account as `talon pairing list` shows it')
    .action(async (channel: string, account: string) => {
      if (!(await withAdminNats((nc) => unpair(nc, channel, account)))) throw new CliError(`no pairing for ${channel}:${account}`);
      console.log(`Unpaired ${channel}:${account}.`);
    });
}
