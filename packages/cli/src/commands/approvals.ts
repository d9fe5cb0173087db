// `talon approvals list|approve|deny`: decisions the agent waits for (tool calls
// that need approval, skills). Records live in talon_approvals; a decision is a
// compare-and-set on the record, so the CLI, the web UI and the user cannot all
// decide the same request.
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { TalonError } from '@talon/kit/errors';
import type { NatsConnection } from '@talon/kit/nats';
import { ApprovalKind, type Approval } from '@talon/proto';
import { approvalState, Approvals } from '@talon/records/approvals';
import { CliError, withAdminNats } from '../context.ts';

export async function listApprovals(nc: NatsConnection): Promise<Approval[]> {
  return (await (await new Approvals(nc).open()).list()).sort((a, b) => b.requestedAtMs - a.requestedAtMs);
}

/** Decides by compare-and-set with the same rules as the gateway's operator API (@talon/records/approvals). */
export async function decideApproval(nc: NatsConnection, id: string, approve: boolean, reason: string, by: string): Promise<Approval> {
  const approvals = await new Approvals(nc).open();
  try {
    return await approvals.decide(id, { approve, by, reason });
  } catch (err) {
    if (err instanceof TalonError && err.code === 'not_found') throw new CliError(`${err.message} (see talon approvals list)`);
    if (err instanceof TalonError && err.code !== 'unavailable') throw new CliError(err.message);
    throw err;
  }
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
