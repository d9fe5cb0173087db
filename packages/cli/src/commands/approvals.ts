// `talon approvals list|approve|deny`: decisions the agent waits for (tool calls
// that need approval, skills). Records live in talon_approvals; a decision is a
// compare-and-set on the record, so the CLI, the web UI and the user cannot all
// decide the same request.
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { Kvm } from '@nats-io/kv';
import { approvalKey, approvalState, KV_BUCKETS, type NatsConnection } from '@talon/kit';
import { Approval, ApprovalKind, ApprovalStatus } from '@talon/proto';
import { CliError, withAdminNats } from '../context.ts';

const ID = /^[A-Za-z0-9_-]{1,64}$/;

export async function listApprovals(nc: NatsConnection): Promise<Approval[]> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.approvals);
  const out: Approval[] = [];
  for await (const key of await kv.keys('approval.>')) {
    const e = await kv.get(key);
    if (e && e.operation === 'PUT' && e.value.length > 0) out.push(Approval.decode(e.value));
  }
  return out.sort((a, b) => b.requestedAtMs - a.requestedAtMs);
}

export async function decideApproval(nc: NatsConnection, id: string, approve: boolean, reason: string, by: string): Promise<Approval> {
  if (!ID.test(id)) throw new CliError('approval ids are 1-64 letters, digits, _ and -');
  const kv = await new Kvm(nc).open(KV_BUCKETS.approvals);
  const e = await kv.get(approvalKey(id));
  if (!e || e.operation !== 'PUT' || e.value.length === 0) throw new CliError(`no approval ${id} (see talon approvals list)`);
  const a = Approval.decode(e.value);
  const state = approvalState(a);
  if (state !== 'pending') throw new CliError(`approval ${id} is already ${state}`);
  const next: Approval = {
    ...a,
    status: approve ? ApprovalStatus.APPROVAL_STATUS_APPROVED : ApprovalStatus.APPROVAL_STATUS_DENIED,
    decidedAtMs: Date.now(),
    decidedBy: by,
    reason: reason.slice(0, 500),
  };
  try {
    await kv.update(approvalKey(id), Approval.encode(next).finish(), e.revision);
  } catch {
    throw new CliError(`approval ${id} was decided by someone else just now`);
  }
  return next;
}

export function registerApprovals(program: Command): void {
  const approvals = program.command('approvals').description('decide what the agent waits for: tool calls that need approval and skills');
  approvals
    .command('list')
    .description('pending approvals (--all: decided ones too)')
    .option('--all', 'include approved, denied and expired ones')
    .action(async (o: { all?: boolean }) => {
      const all = await withAdminNats((nc) => listApprovals(nc));
      const shown = o.all ? all : all.filter((a) => approvalState(a) === 'pending');
      if (shown.length === 0) {
        console.log(o.all ? 'No approvals recorded.' : 'Nothing waits for a decision.');
        return;
      }
      for (const a of shown) {
        const kind = a.kind === ApprovalKind.APPROVAL_KIND_SKILL ? 'skill' : 'tool call';
        console.log(
          `${a.id}  ${approvalState(a).padEnd(8)} ${kind.padEnd(9)} user=${a.userId || '-'}  ${a.summary || `${a.skill}${a.tool ? `.${a.tool}` : ''}`}`,
        );
        if (a.argumentsJson) console.log(`    arguments: ${a.argumentsJson.slice(0, 300)}`);
      }
    });
  for (const verb of ['approve', 'deny'] as const) {
    approvals
      .command(verb)
      .description(verb === 'approve' ? 'let the action run' : 'refuse the action')
      .argument('<id>')
      .option('--reason <text>', 'recorded with the decision', '')
      .action(async (id: string, o: { reason: string }) => {
        const a = await withAdminNats((nc) => decideApproval(nc, id, verb === 'approve', o.reason, `cli:${userInfo().username}`));
        console.log(`Approval ${a.id} ${approvalState(a)}.`);
      });
  }
}
