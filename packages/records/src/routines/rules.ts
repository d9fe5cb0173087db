// What a routine is and when it runs: the one reading of a routine record for the CLI
// (validation at add time, `list`) and every orchestrator replica (firing). Pure: no
// I/O, the clock is an argument. Cron parsing and next/previous instants are croner's,
// in the routine's IANA time zone: a fixed time in a spring-forward gap runs at the first
// instant after the gap, a fixed time in a repeated fall-back hour runs once, and an
// interval ('0 * * * *') keeps its real-time spacing through both.
import { Cron } from 'croner';
import { SUBJECTS } from '@talon/kit/subjects';
import { MissedRunPolicy, Role, RoutineRunState, type InboundMessage, type Routine, type RoutineRun } from '@talon/proto';
import { ROUTINE_NAME, ROUTINE_NAME_RULE, RoutineRuleError } from './names.ts';
import { parseTrigger, type Trigger } from './events.ts';

export { ROUTINE_NAME, ROUTINE_NAME_RULE, RoutineRuleError };
export const PROMPT_MAX_CHARS = 16_000;
/** Runs kept per routine (older ones are purged after each firing). */
export const RUNS_KEPT = 20;

export function checkRoutineName(name: string): string {
  if (!ROUTINE_NAME.test(name))
    throw new RoutineRuleError(`routine name ${JSON.stringify(name.slice(0, 60))} must be ${ROUTINE_NAME_RULE}`);
  return name;
}

/** The canonical IANA name of `tz` (e.g. "europe/berlin" → "Europe/Berlin"); throws naming the problem. */
export function checkTimeZone(tz: string): string {
  if (tz.trim() === '') throw new RoutineRuleError('--tz is empty; give an IANA time zone such as Europe/Berlin or UTC');
  let canonical: string;
  try {
    canonical = new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone;
    // Offsets ("+01:00") are valid for Intl but are no zone: they have no DST rules.
    if (!/^[A-Za-z]/.test(canonical)) throw new RangeError('offset');
  } catch {
    throw new RoutineRuleError(
      `unknown time zone ${JSON.stringify(tz.slice(0, 60))}: give an IANA time zone such as Europe/Berlin, America/New_York or UTC`,
    );
  }
  return canonical;
}

/** A parsed schedule: 5 cron fields (minute precision) or 6 (seconds first), read in `timeZone`. */
export interface Schedule {
  readonly cron: string;
  readonly timeZone: string;
  readonly job: Cron;
}

export function parseSchedule(cron: string, timeZone: string): Schedule {
  const tz = checkTimeZone(timeZone);
  let job: Cron;
  try {
    job = new Cron(cron, { timezone: tz, mode: '5-or-6-parts', paused: true });
  } catch (err) {
    const why = String((err as Error).message).replace(/^CronPattern:\s*/, '');
    throw new RoutineRuleError(
      `invalid cron expression ${JSON.stringify(cron.slice(0, 80))}: ${why}. Use 5 fields (minute hour day-of-month month day-of-week, e.g. '0 8 * * 1-5') or 6 with seconds first`,
    );
  }
  let first: Date | null;
  try {
    first = job.nextRun(new Date());
  } catch {
    throw new RoutineRuleError(
      `time zone ${JSON.stringify(tz)} cannot be used for schedules; give an IANA name such as Europe/Berlin or UTC`,
    );
  }
  if (first === null) throw new RoutineRuleError(`cron expression ${JSON.stringify(cron)} never runs again`);
  return { cron, timeZone: tz, job };
}

/** The first slot strictly after `afterMs`, or undefined when there is none. */
export function nextSlotAfter(s: Schedule, afterMs: number): number | undefined {
  return s.job.nextRun(new Date(afterMs))?.getTime();
}

/** The latest slot at or before `atMs`, or undefined. */
export function slotAtOrBefore(s: Schedule, atMs: number): number | undefined {
  // previousRuns is strictly before its (second-truncated) reference: look from the next second on.
  const ref = Math.floor(atMs / 1000) * 1000 + 1000;
  const prev = s.job.previousRuns(1, new Date(ref))[0]?.getTime();
  return prev !== undefined && prev <= atMs ? prev : undefined;
}

export type Due =
  { kind: 'fire'; slotMs: number; missed: boolean; skipped: number } | { kind: 'skip'; slotMs: number; skipped: number } | { kind: 'none' };

/**
 * What a replica fires for a routine when it looks at `nowMs`, having looked before at
 * `afterMs` (exclusive; 0 at start). At most one slot per look, the newest due one:
 * on time when it is at most `graceMs` old, else missed — run once under RUN_ONCE,
 * not at all under SKIP. Older slots of the same look are never run (no burst after a
 * stall or an outage). Slots at or before `activeSinceMs` (creation, last resume) never run.
 */
export function dueSlot(
  s: Schedule,
  r: Pick<Routine, 'activeSinceMs' | 'missed' | 'paused'>,
  afterMs: number,
  nowMs: number,
  graceMs: number,
): Due {
  if (r.paused) return { kind: 'none' };
  const from = Math.max(afterMs, r.activeSinceMs);
  const slot = slotAtOrBefore(s, nowMs);
  if (slot === undefined || slot <= from) return { kind: 'none' };
  const skipped = countSlots(s, from, slot, 100);
  if (nowMs - slot <= graceMs) return { kind: 'fire', slotMs: slot, missed: false, skipped };
  if (r.missed === MissedRunPolicy.MISSED_RUN_POLICY_RUN_ONCE) return { kind: 'fire', slotMs: slot, missed: true, skipped };
  return { kind: 'skip', slotMs: slot, skipped: skipped + 1 };
}

/** Slots strictly between `fromMs` and `toMs`, counted up to `cap` (for logs and `list` only). */
function countSlots(s: Schedule, fromMs: number, toMs: number, cap: number): number {
  let n = 0;
  for (let t = nextSlotAfter(s, fromMs); t !== undefined && t < toMs && n < cap; t = nextSlotAfter(s, t)) n++;
  return n;
}

/** When a replica should look again: the next slot after `afterMs` of any routine, capped at `maxWaitMs`. */
export function nextWake(schedules: ReadonlyArray<{ s: Schedule; paused: boolean }>, afterMs: number, maxWaitMs: number): number {
  let wake = afterMs + maxWaitMs;
  for (const x of schedules) {
    if (x.paused) continue;
    const n = nextSlotAfter(x.s, afterMs);
    if (n !== undefined && n < wake) wake = n;
  }
  return wake;
}

// ---- where the answer goes ----

export interface Target {
  /** The conversation the turn belongs to (and the channel thread a reply is sent to). */
  channel: 'web' | 'telegram' | 'webhook';
  threadId: string;
  /** The reply route (SUBJECTS): kept in memory only, or a channel's durable route. */
  replySubject: string;
}

const TELEGRAM_CHAT = /^-?\d{1,20}$/;
const WEBHOOK_THREAD = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,127}$/;
export const DELIVER_RULE = 'web, telegram:<chat id> or webhook:<thread>';

/** The target of a `--deliver` value; throws naming the problem. */
export function parseDeliver(deliver: string, routineName: string): Target {
  if (deliver === 'web') return { channel: 'web', threadId: `routine-${routineName}`, replySubject: SUBJECTS.keptReply };
  const [kind, ...rest] = deliver.split(':');
  const arg = rest.join(':');
  if (kind === 'telegram') {
    if (!TELEGRAM_CHAT.test(arg))
      throw new RoutineRuleError(`--deliver telegram:<chat id> needs a numeric Telegram chat id; got ${JSON.stringify(arg.slice(0, 40))}`);
    return { channel: 'telegram', threadId: `chat:${arg}`, replySubject: SUBJECTS.channelReply('telegram') };
  }
  if (kind === 'webhook') {
    if (!WEBHOOK_THREAD.test(arg))
      throw new RoutineRuleError(
        `--deliver webhook:<thread> needs 1-128 characters of letters, digits and :@._+-; got ${JSON.stringify(arg.slice(0, 40))}`,
      );
    return { channel: 'webhook', threadId: arg, replySubject: SUBJECTS.channelReply('webhook') };
  }
  throw new RoutineRuleError(`--deliver must be ${DELIVER_RULE}; got ${JSON.stringify(deliver.slice(0, 60))}`);
}

export function parseMissed(v: string): MissedRunPolicy {
  if (v === 'skip') return MissedRunPolicy.MISSED_RUN_POLICY_SKIP;
  if (v === 'run-once') return MissedRunPolicy.MISSED_RUN_POLICY_RUN_ONCE;
  throw new RoutineRuleError(`--missed must be skip or run-once; got ${JSON.stringify(v.slice(0, 40))}`);
}

export function missedName(p: MissedRunPolicy): 'skip' | 'run-once' {
  return p === MissedRunPolicy.MISSED_RUN_POLICY_RUN_ONCE ? 'run-once' : 'skip';
}

/**
 * Checks a whole routine record (CLI before writing it, orchestrator before firing it); returns
 * its schedule (a cron routine) or its event trigger — exactly one of the two.
 */
export function checkRoutine(r: Routine): { schedule: Schedule | undefined; trigger: Trigger; target: Target } {
  checkRoutineName(r.name);
  if (r.prompt.trim() === '') throw new RoutineRuleError('--prompt is empty; say what the agent should do on each run');
  if (r.prompt.length > PROMPT_MAX_CHARS) throw new RoutineRuleError(`--prompt is longer than ${PROMPT_MAX_CHARS} characters`);
  if (r.userId === '') throw new RoutineRuleError('--user is required: the Talon user the routine runs as');
  const trigger = parseTrigger(r.trigger);
  const target = parseDeliver(r.deliver, r.name);
  if (trigger.kind !== 'cron') {
    if (r.cron !== '') throw new RoutineRuleError('give either --cron or --on (one trigger per routine), not both');
    if (r.heartbeat) throw new RoutineRuleError('--heartbeat runs on a schedule: give it --cron, not --on');
    return { schedule: undefined, trigger, target };
  }
  if (r.cron === '') throw new RoutineRuleError('a routine needs a trigger: --cron <expr> or --on <event>');
  if (r.heartbeat && r.checklist.trim() === '')
    throw new RoutineRuleError('--heartbeat needs --checklist <document key>: the memory document the check goes through');
  if (!r.heartbeat && r.checklist !== '') throw new RoutineRuleError('--checklist is for --heartbeat routines only');
  if (r.checklist.length > 256) throw new RoutineRuleError('--checklist is longer than 256 characters');
  return { schedule: parseSchedule(r.cron, r.timeZone), trigger, target };
}

// ---- the turn of a firing ----

const TURN_ID = /^routine-([a-z0-9][a-z0-9_-]{0,47})-(\d{1,15})$/;

/** The inbound message id of a firing: also its Nats-Msg-Id, so a retried publish is deduplicated. */
export function routineTurnId(name: string, scheduledAtMs: number): string {
  return `routine-${name}-${scheduledAtMs}`;
}

/** The routine and slot of a turn id, or undefined for any other turn. */
export function parseRoutineTurnId(id: string): { name: string; scheduledAtMs: number } | undefined {
  const m = TURN_ID.exec(id);
  return m ? { name: m[1]!, scheduledAtMs: Number(m[2]) } : undefined;
}

/** The one ordinary turn a firing becomes (the prompt already redacted by the caller). */
export function routineInbound(
  r: Routine,
  target: Target,
  scheduledAtMs: number,
  prompt: string,
  redacted: string[],
  nowMs: number,
): InboundMessage {
  const id = routineTurnId(r.name, scheduledAtMs);
  return {
    id,
    conversation: { userId: r.userId, channel: target.channel, threadId: target.threadId },
    messages: [{ role: Role.ROLE_USER, content: prompt, name: '' }],
    stream: false,
    reply: { subject: target.replySubject, streamSubject: '', requestId: id },
    model: '',
    receivedAtMs: nowMs,
    redacted,
    // A routine's agent answers its runs (services/orchestrator/src/agents.ts, rule 1).
    ...(r.agent ? { agent: r.agent } : {}),
  };
}

// ---- claims ----

export type ClaimVerdict = { kind: 'take'; takeover: boolean } | { kind: 'wait'; untilMs: number } | { kind: 'done' };

/**
 * What a replica may do with the existing record of a firing: take a REQUESTED one or a
 * CLAIMED one whose lease has passed (its holder died or stalled before publishing), wait
 * for a live claim's lease, or leave a fired or finished one alone.
 */
export function claimVerdict(run: RoutineRun, nowMs: number): ClaimVerdict {
  switch (run.state) {
    case RoutineRunState.ROUTINE_RUN_STATE_REQUESTED:
      return { kind: 'take', takeover: false };
    case RoutineRunState.ROUTINE_RUN_STATE_CLAIMED:
      return run.leaseUntilMs <= nowMs ? { kind: 'take', takeover: true } : { kind: 'wait', untilMs: run.leaseUntilMs };
    default:
      return { kind: 'done' };
  }
}

/** The run as claimed by `owner` until `nowMs + leaseMs`. */
export function claimed(run: RoutineRun, owner: string, nowMs: number, leaseMs: number, takeover: boolean): RoutineRun {
  return {
    ...run,
    state: RoutineRunState.ROUTINE_RUN_STATE_CLAIMED,
    owner,
    leaseUntilMs: nowMs + leaseMs,
    firstClaimedAtMs: run.firstClaimedAtMs || nowMs,
    takeovers: run.takeovers + (takeover ? 1 : 0),
    turnId: routineTurnId(run.routine, run.scheduledAtMs),
  };
}

/** A new run record for a slot. */
export function newRun(
  name: string,
  scheduledAtMs: number,
  o: { manual?: boolean; missed?: boolean; requestedAtMs?: number } = {},
): RoutineRun {
  return {
    routine: name,
    scheduledAtMs,
    state: o.manual ? RoutineRunState.ROUTINE_RUN_STATE_REQUESTED : RoutineRunState.ROUTINE_RUN_STATE_UNSPECIFIED,
    owner: '',
    leaseUntilMs: 0,
    firstClaimedAtMs: 0,
    firedAtMs: 0,
    turnId: '',
    finishedAtMs: 0,
    error: '',
    manual: o.manual ?? false,
    missed: o.missed ?? false,
    takeovers: 0,
    requestedAtMs: o.requestedAtMs ?? 0,
    event: '',
    outcome: '',
  };
}

/** The run once its turn is queued; an outcome recorded first (a fast turn) is kept. */
export function fired(run: RoutineRun, nowMs: number): RoutineRun {
  const open = run.state === RoutineRunState.ROUTINE_RUN_STATE_CLAIMED || run.state === RoutineRunState.ROUTINE_RUN_STATE_REQUESTED;
  return { ...run, state: open ? RoutineRunState.ROUTINE_RUN_STATE_FIRED : run.state, firedAtMs: run.firedAtMs || nowMs, owner: '' };
}

/** The run once its turn answered (`error` empty) or failed. */
export function finished(run: RoutineRun, error: string, nowMs: number): RoutineRun {
  return {
    ...run,
    state: error === '' ? RoutineRunState.ROUTINE_RUN_STATE_OK : RoutineRunState.ROUTINE_RUN_STATE_FAILED,
    finishedAtMs: nowMs,
    error: error.slice(0, 64),
    owner: '',
    turnId: run.turnId || routineTurnId(run.routine, run.scheduledAtMs),
  };
}

export function runStateName(s: RoutineRunState): string {
  switch (s) {
    case RoutineRunState.ROUTINE_RUN_STATE_REQUESTED:
      return 'requested';
    case RoutineRunState.ROUTINE_RUN_STATE_CLAIMED:
      return 'claimed';
    case RoutineRunState.ROUTINE_RUN_STATE_FIRED:
      return 'fired';
    case RoutineRunState.ROUTINE_RUN_STATE_OK:
      return 'ok';
    case RoutineRunState.ROUTINE_RUN_STATE_FAILED:
      return 'failed';
    default:
      return 'unknown';
  }
}

/** Run keys beyond the newest `keep` (by scheduled instant) of one routine: to purge. */
export function runsToPrune(scheduledAtMs: readonly number[], keep: number = RUNS_KEPT): number[] {
  return [...scheduledAtMs].sort((a, b) => b - a).slice(keep);
}
