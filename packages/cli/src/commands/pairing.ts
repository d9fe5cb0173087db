// `talon pairing list|approve|deny|revoke`: chat-platform accounts reach the agent
// only once an operator paired them with a Talon user. An unknown sender is given
// a code by the gateway; the operator approves that code here (or in the web UI).
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS, pairedKey, pairingCodeKey, pendingPairingKey, userKey, type NatsConnection } from '@talon/kit';
import { Pairing, PairingRequest, User } from '@talon/proto';
import { CliError, withAdminNats } from '../context.ts';
import { USER_ID } from '../tokens.ts';

const CODE = /^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{8}$/;

export function normalizeCode(input: string): string {
  const c = input.toUpperCase().replace(/[\s-]/g, '');
  if (!CODE.test(c)) throw new CliError(`"${input}" is not a pairing code (8 letters and digits, like ABCD-EF23)`);
  return c;
}

const show = (c: string) => `${c.slice(0, 4)}-${c.slice(4)}`;

export async function listPairings(nc: NatsConnection): Promise<{ pending: PairingRequest[]; paired: Pairing[] }> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.pairings);
  const pending: PairingRequest[] = [];
  const paired: Pairing[] = [];
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (!e || e.operation !== 'PUT' || e.value.length === 0) continue;
    if (key.startsWith('code.')) {
      const r = PairingRequest.decode(e.value);
      if (r.expiresAtMs > Date.now()) pending.push(r);
    } else if (key.startsWith('paired.')) paired.push(Pairing.decode(e.value));
  }
  return { pending: pending.sort((a, b) => a.createdAtMs - b.createdAtMs), paired };
}

/** Approves a pending code for an existing, enabled user. Compare-and-set: one decision per code. */
export async function approvePairing(nc: NatsConnection, codeInput: string, userId: string, by: string): Promise<Pairing> {
  const code = normalizeCode(codeInput);
  if (!USER_ID.test(userId)) throw new CliError(`user id "${userId}" must be 1-64 characters of a-z, 0-9, . _ -`);
  const kv = await new Kvm(nc).open(KV_BUCKETS.pairings);
  const e = await kv.get(pairingCodeKey(code));
  if (!e || e.operation !== 'PUT' || e.value.length === 0)
    throw new CliError(`no pending pairing with code ${show(code)} (expired or already decided?)`);
  const req = PairingRequest.decode(e.value);
  if (req.expiresAtMs <= Date.now()) throw new CliError(`pairing code ${show(code)} expired; ask the sender to write again for a new one`);
  const users = await new Kvm(nc).open(KV_BUCKETS.users);
  const ue = await users.get(userKey(userId));
  if (!ue || ue.operation !== 'PUT' || ue.value.length === 0)
    throw new CliError(`no user ${userId}; add it first: talon users add ${userId}`);
  if (User.decode(ue.value).disabledAtMs > 0) throw new CliError(`user ${userId} is disabled (talon users enable ${userId})`);
  const id = req.identity!;
  try {
    await kv.update(pairingCodeKey(code), new Uint8Array(0), e.revision);
  } catch {
    throw new CliError(`pairing code ${show(code)} was decided by someone else just now`);
  }
  const p: Pairing = { identity: id, userId, approvedAtMs: Date.now(), approvedBy: by, code, threadId: req.threadId };
  await kv.put(pairedKey(id.channel, id.account), Pairing.encode(p).finish());
  await kv.delete(pairingCodeKey(code)).catch(() => undefined);
  await kv.delete(pendingPairingKey(id.channel, id.account)).catch(() => undefined);
  return p;
}

export async function denyPairing(nc: NatsConnection, codeInput: string): Promise<PairingRequest> {
  const code = normalizeCode(codeInput);
  const kv = await new Kvm(nc).open(KV_BUCKETS.pairings);
  const e = await kv.get(pairingCodeKey(code));
  if (!e || e.operation !== 'PUT' || e.value.length === 0) throw new CliError(`no pending pairing with code ${show(code)}`);
  const req = PairingRequest.decode(e.value);
  await kv.delete(pairingCodeKey(code));
  if (req.identity) await kv.delete(pendingPairingKey(req.identity.channel, req.identity.account)).catch(() => undefined);
  return req;
}

export async function unpair(nc: NatsConnection, channel: string, account: string): Promise<boolean> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.pairings);
  const e = await kv.get(pairedKey(channel, account));
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return false;
  await kv.delete(pairedKey(channel, account));
  return true;
}

export function registerPairing(program: Command): void {
  const pairing = program
    .command('pairing')
    .description('approve chat-platform accounts (Telegram, Slack, Discord, webhook senders) before they can reach the agent');
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
    .argument('<channel>', 'telegram, slack, discord or webhook')
    .argument('<account>', 'the platform account as `talon pairing list` shows it')
    .action(async (channel: string, account: string) => {
      if (!(await withAdminNats((nc) => unpair(nc, channel, account)))) throw new CliError(`no pairing for ${channel}:${account}`);
      console.log(`Unpaired ${channel}:${account}.`);
    });
}
