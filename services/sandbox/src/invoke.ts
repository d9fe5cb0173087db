// One invocation, start to finish: decode, check the request, find the approved and
// verified skill, run it in a plugin host with its limits, answer with a SkillResult.
// Every failure becomes a SkillError with a stable code; nothing a plugin does can
// make this function throw.
import { SkillInvocation, SkillResult, type SkillInvocationAudit } from '@talon/proto';
import { SKILL_HOST_WAIT_MS } from '@talon/kit/contracts';
import type { Logger } from '@talon/kit/log';
import { SpanKind, context, withSpan, type Context } from '@talon/kit/telemetry';
import { SkillRunError, type SkillErrorCode } from './errors.ts';
import { countInvocation } from './metrics.ts';
import type { HttpBridge, InvocationContext } from './http-bridge.ts';
import type { HostJob, HostOutcome } from './host/pool.ts';
import { NAME_PATTERN, VERSION_PATTERN, skillId } from '@talon/records/skills';
import type { ApprovedSkill } from './registry/records.ts';
import type { RunnableSkill } from './registry/reader.ts';

export const INVOKE_PREFIX = 'talon.skill.invoke.';

export interface SkillSource {
  approvedSkill(name: string, version: string): Promise<ApprovedSkill>;
  runnable(skill: ApprovedSkill): Promise<RunnableSkill>;
}

export interface Runner {
  run(job: HostJob): Promise<HostOutcome>;
}

export interface InvokeLimits {
  maxInputBytes: number;
  maxOutputBytes: number;
  maxLogLines: number;
}

export interface InvokerDeps {
  skills: SkillSource;
  pool: Runner;
  bridge: Pick<HttpBridge, 'handle'>;
  limits: InvokeLimits;
  log: Logger;
  audit?: (a: SkillInvocationAudit) => void;
  node?: string;
}

function fail(
  inv: Pick<SkillInvocation, 'invocationId'>,
  code: SkillErrorCode | string,
  message: string,
  extra: Partial<SkillResult> = {},
): SkillResult {
  return { invocationId: inv.invocationId, output: '', error: { code, message }, durationMs: 0, version: '', hostCalls: 0, ...extra };
}

export class Invoker {
  private readonly skills: SkillSource;
  private readonly pool: Runner;
  private readonly bridge: Pick<HttpBridge, 'handle'>;
  private readonly limits: InvokeLimits;
  private readonly log: Logger;
  private readonly audit: ((a: SkillInvocationAudit) => void) | undefined;
  private readonly node: string | undefined;

  constructor(deps: InvokerDeps) {
    this.skills = deps.skills;
    this.pool = deps.pool;
    this.bridge = deps.bridge;
    this.limits = deps.limits;
    this.log = deps.log;
    this.audit = deps.audit;
    this.node = deps.node;
  }

  /**
   * Handles a raw NATS request; `subject` is the subject it arrived on, `parent` the trace
   * context of its headers (the caller's turn). Never throws.
   */
  handle(subject: string, data: Uint8Array, parent?: Context): Promise<Uint8Array> {
    return withSpan('sandbox.invoke', { kind: SpanKind.SERVER, parent, attributes: { 'messaging.destination.name': subject } }, (span) =>
      this.invoke(subject, data).then(({ bytes, outcome }) => {
        span.setAttribute('talon.skill.outcome', outcome);
        return bytes;
      }),
    );
  }

  private async invoke(subject: string, data: Uint8Array): Promise<{ bytes: Uint8Array; outcome: string }> {
    const started = Date.now();
    let inv: SkillInvocation;
    try {
      inv = SkillInvocation.decode(data);
    } catch {
      return {
        bytes: SkillResult.encode(fail({ invocationId: '' }, 'invalid_argument', 'undecodable SkillInvocation')).finish(),
        outcome: 'invalid_argument',
      };
    }
    let res: SkillResult;
    let sha = '';
    try {
      const r = await this.run(subject, inv);
      res = r.result;
      sha = r.sha256;
    } catch (err) {
      if (err instanceof SkillRunError) res = fail(inv, err.code, err.message);
      else {
        this.log.error({ err, skill: inv.skill }, 'invocation failed unexpectedly');
        res = fail(inv, 'internal', 'the sandbox failed to run the skill; see the sandbox log');
      }
    }
    res.durationMs = Date.now() - started;
    countInvocation(res);
    const audit = this.audit;
    if (audit) {
      const record: SkillInvocationAudit = {
        invocationId: inv.invocationId,
        skill: inv.skill,
        version: res.version || inv.version,
        sha256: sha,
        userId: inv.userId,
        outcome: res.error ? res.error.code : 'ok',
        durationMs: res.durationMs,
        hostCalls: res.hostCalls,
        atMs: started,
        node: this.node ?? '',
      };
      // After the reply is on its way: the audit record is captured by JetStream, which
      // must not sit between the caller and its answer.
      setImmediate(() => audit(record));
    }
    return { bytes: SkillResult.encode(res).finish(), outcome: res.error ? res.error.code : 'ok' };
  }

  private async run(subject: string, inv: SkillInvocation): Promise<{ result: SkillResult; sha256: string }> {
    const { limits } = this;
    if (!NAME_PATTERN.test(inv.skill)) throw new SkillRunError('invalid_argument', 'skill must be a skill name (a-z, 0-9, -)');
    if (subject !== `${INVOKE_PREFIX}${inv.skill}`) {
      throw new SkillRunError('invalid_argument', `the invocation names skill ${inv.skill} but was sent to ${subject.slice(0, 100)}`);
    }
    if (inv.version !== '' && !VERSION_PATTERN.test(inv.version))
      throw new SkillRunError('invalid_argument', 'version must be a semantic version or empty');
    if (Buffer.byteLength(inv.inputJson) > limits.maxInputBytes) {
      throw new SkillRunError('invalid_argument', `input is larger than ${limits.maxInputBytes} bytes`);
    }
    const now = Date.now();
    if (inv.deadlineMs > 0 && inv.deadlineMs <= now) throw new SkillRunError('timeout', 'the invocation arrived after its deadline');
    const approved = await this.skills.approvedSkill(inv.skill, inv.version);
    if (approved.requiresUserApproval && !inv.userApproved) {
      throw new SkillRunError(
        'permission_denied',
        `skill ${approved.id} needs the user's approval for every call; ask the user, then invoke with user_approved`,
      );
    }
    const skill = await this.skills.runnable(approved);
    // The skill's timeout runs from the moment a host takes the call; waiting for one is
    // bounded apart (SKILL_HOST_WAIT_MS), and both by the caller's deadline.
    const deadline = Math.min(now + SKILL_HOST_WAIT_MS + skill.timeoutMs, inv.deadlineMs > 0 ? inv.deadlineMs : Number.MAX_SAFE_INTEGER);
    const ctx: InvocationContext = {
      skill: skill.record.name,
      version: skill.record.version,
      invocationId: inv.invocationId,
      userId: inv.userId,
      calls: 0,
    };
    const outcome = await this.pool.run({
      skillKey: skill.id,
      sha256: skill.record.sha256,
      wasm: skill.wasm,
      entrypoint: skill.entrypoint,
      input: inv.inputJson === '' ? '{}' : inv.inputJson,
      inputSchema: skill.inputSchema,
      maxPages: skill.maxPages,
      limits: {
        // The Extism kernel's host-side allocations share the skill's memory budget.
        maxAllocBytes: skill.memoryMb * 1024 * 1024,
        maxOutputBytes: limits.maxOutputBytes,
        maxVarBytes: Math.min(1024 * 1024, skill.memoryMb * 1024 * 1024),
        maxLogLines: limits.maxLogLines,
      },
      deadline,
      runMs: skill.timeoutMs,
      // Host calls arrive from the plugin host's channel, outside this invocation's async
      // context: bound to it, the skill's requests through egress stay in the caller's trace.
      onHostCall: context.bind(context.active(), (fn: string, payload: string, signal: AbortSignal) =>
        this.bridge.handle(ctx, fn, payload, signal),
      ),
    });
    if (outcome.logs.length > 0) this.log.debug({ skill: skill.id, plugin_logs: outcome.logs }, 'plugin log lines');
    const extra = { version: skill.record.version, hostCalls: ctx.calls };
    if (!outcome.ok) {
      const e = outcome.error ?? { code: 'internal', message: 'the plugin host gave no result' };
      if (outcome.hostReplaced) this.log.warn({ skill: skill.id, code: e.code }, 'plugin stopped; its host was replaced');
      return {
        result: fail(inv, e.code, `${skillId(skill.record.name, skill.record.version)}: ${e.message}`, extra),
        sha256: skill.record.sha256,
      };
    }
    const output = Buffer.from(outcome.output ?? new Uint8Array(0)).toString('utf8');
    return { result: { invocationId: inv.invocationId, output, error: undefined, durationMs: 0, ...extra }, sha256: skill.record.sha256 };
  }
}
