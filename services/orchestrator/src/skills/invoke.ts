// Calls a skill on a sandbox node: a NATS request on talon.skill.invoke.<name>
// (queue group sandbox) carrying a SkillInvocation, answered with a SkillResult.
// The version is pinned to the one offered, the deadline tells the sandbox when we
// stop waiting, and busy/unavailable (no free plugin host, no node) are retried
// once after a short pause. Every failure comes back as a SkillResult error with a
// stable code; this module never throws.
import { setTimeout as sleep } from 'node:timers/promises';
import { SKILL_HOST_WAIT_MS } from '@talon/kit/contracts';
import { SUBJECTS } from '@talon/kit/subjects';
import { tracedHeaders, type NatsConnection } from '@talon/kit/nats';
import { SkillInvocation, SkillResult } from '@talon/proto';

export interface SkillCall {
  invocationId: string;
  skill: string;
  version: string;
  inputJson: string;
  userId: string;
  userApproved: boolean;
  /** approved.timeout_ms of the version. */
  timeoutMs: number;
  /** Epoch ms past which the caller no longer waits. */
  deadline: number;
  signal?: AbortSignal;
}

/** Time between the sandbox's deadline and ours, so its own timeout answer still reaches us. */
export const REPLY_SLACK_MS = 1000;
const RETRYABLE = new Set(['busy', 'unavailable']);

function failed(call: Pick<SkillCall, 'invocationId'>, code: string, message: string): SkillResult {
  return { invocationId: call.invocationId, output: '', error: { code, message }, durationMs: 0, version: '', hostCalls: 0 };
}

/** How long to wait for this attempt (the skill's timeout, its wait for a plugin host, slack) and the deadline to send the sandbox. Pure. */
export function attemptBudget(call: Pick<SkillCall, 'timeoutMs' | 'deadline'>, now: number): { waitMs: number; deadlineMs: number } {
  const waitMs = Math.min(call.deadline - now, call.timeoutMs + SKILL_HOST_WAIT_MS + REPLY_SLACK_MS);
  const margin = Math.min(REPLY_SLACK_MS / 2, Math.floor(waitMs / 4));
  return { waitMs, deadlineMs: now + waitMs - margin };
}

/** The text the model reads for a failed skill call (inside its untrusted tool block). Pure. */
export function describeSkillError(skill: string, version: string, code: string, message: string): string {
  const id = `${skill}@${version}`;
  const detail = message.replace(/\s+/g, ' ').trim().slice(0, 400);
  const what: Record<string, string> = {
    not_found: 'is not installed any more',
    not_approved: 'is no longer approved by the operator',
    permission_denied: 'was refused permission',
    integrity_error: 'failed its integrity check and was not run',
    refused_module: 'was refused by the sandbox',
    timeout: 'did not finish in time',
    memory_limit: 'ran out of memory',
    output_too_large: 'produced more output than allowed',
    trap: 'crashed',
    plugin_error: 'reported an error',
    rate_limited: 'was rate limited',
    busy: 'could not run: the sandbox is busy; try again later',
    unavailable: 'could not run: no sandbox is available; try again later',
    invalid_argument: 'was called with input the sandbox refused',
    internal: 'failed inside the sandbox',
  };
  return `skill ${id} ${what[code] ?? 'failed'} (${code})${detail ? `: ${detail}` : ''}`;
}

export class SkillInvoker {
  private readonly nc: NatsConnection;
  private readonly retryDelayMs: number;

  constructor(nc: NatsConnection, opts: { retryDelayMs?: number } = {}) {
    this.nc = nc;
    this.retryDelayMs = opts.retryDelayMs ?? 250;
  }

  async invoke(call: SkillCall): Promise<SkillResult> {
    let res = await this.once(call);
    if (res.error && RETRYABLE.has(res.error.code) && !call.signal?.aborted) {
      const pause = this.retryDelayMs + Math.floor(Math.random() * this.retryDelayMs);
      if (call.deadline - Date.now() > pause + 200) {
        try {
          await sleep(pause, undefined, call.signal ? { signal: call.signal } : {});
        } catch {
          return res;
        }
        res = await this.once(call);
      }
    }
    return res;
  }

  private async once(call: SkillCall): Promise<SkillResult> {
    const { waitMs, deadlineMs } = attemptBudget(call, Date.now());
    if (waitMs < 50) return failed(call, 'timeout', 'no time left in this turn to call the skill');
    const inv: SkillInvocation = {
      invocationId: call.invocationId,
      skill: call.skill,
      version: call.version,
      inputJson: call.inputJson,
      deadlineMs,
      userId: call.userId,
      userApproved: call.userApproved,
    };
    let data: Uint8Array;
    try {
      const msg = await this.nc.request(SUBJECTS.skillInvoke(call.skill), SkillInvocation.encode(inv).finish(), {
        timeout: waitMs,
        // The sandbox continues the turn's trace (its span and its requests through egress).
        headers: tracedHeaders(),
      });
      data = msg.data;
    } catch (err) {
      const e = err as Error & { isNoResponders?: () => boolean };
      if (typeof e.isNoResponders === 'function' && e.isNoResponders())
        return failed(call, 'unavailable', 'no sandbox node is running (start the sandbox service)');
      if (e.name === 'TimeoutError' || /timeout/i.test(String(e.message)))
        return failed(call, 'timeout', `no answer from the sandbox within ${waitMs} ms`);
      return failed(call, 'unavailable', `the sandbox could not be reached: ${String(e.message).slice(0, 200)}`);
    }
    try {
      return SkillResult.decode(data);
    } catch {
      return failed(call, 'internal', 'the sandbox answered with an undecodable result');
    }
  }
}
