// Handles one invocation request. Until a skill is installed and approved there
// is nothing to run, and the caller gets a precise error rather than silence.
import { SkillInvocation, SkillResult } from '@talon/proto';

export interface SkillRunner {
  run(inv: SkillInvocation): Promise<SkillResult>;
}

export class NoSkillsInstalled implements SkillRunner {
  async run(inv: SkillInvocation): Promise<SkillResult> {
    return {
      invocationId: inv.invocationId,
      output: '',
      error: { code: 'not_found', message: `no approved skill ${inv.skill}@${inv.version || 'latest'} is installed on this sandbox` },
      durationMs: 0,
    };
  }
}

export async function handleInvocation(data: Uint8Array, runner: SkillRunner): Promise<Uint8Array> {
  let inv: SkillInvocation;
  try {
    inv = SkillInvocation.decode(data);
  } catch {
    return SkillResult.encode({
      invocationId: '',
      output: '',
      error: { code: 'invalid_argument', message: 'undecodable invocation' },
      durationMs: 0,
    }).finish();
  }
  const started = Date.now();
  const res = await runner.run(inv);
  return SkillResult.encode({ ...res, durationMs: res.durationMs || Date.now() - started }).finish();
}
