// `talon routines add|list|run-now|pause|resume|rm`: turns that start on a schedule.
// Definitions live in talon_routines (written here, as the admin identity); the
// orchestrators fire each slot exactly once and record every run in
// talon_routine_runs, which `list` reads. Everything is checked before it is written,
// with the rules the orchestrators use (@talon/records/routines).
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { NatsConnection } from '@talon/kit/nats';
import { RoutineRunState, type Routine, type RoutineRun } from '@talon/proto';
import { isWrongSequence } from '@talon/records';
import { Users } from '@talon/records/identity';
import { AGENT_NAME_RULE, AgentProfiles, isAgentName } from '@talon/records/agents';
import {
  checkRoutine,
  checkRoutineName,
  checkTimeZone,
  missedName,
  newRun,
  nextSlotAfter,
  parseMissed,
  parseSchedule,
  parseTrigger,
  triggerString,
  webhookEventSubject,
  RoutineRuleError,
  RoutineRuns,
  Routines,
  runStateName,
} from '@talon/records/routines';
import { CliError, withAdminNats } from '../context.ts';

/** Rule violations become CLI errors (exit 1) with the rule's own message. */
function rule<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RoutineRuleError) throw new CliError(err.message);
    throw err;
  }
}

/** "2026-12-07 08:00:00 Europe/Berlin (07:00:00Z)" */
export function showInstant(ms: number, tz: string): string {
  const local = new Intl.DateTimeFormat('sv-SE', { timeZone: tz, dateStyle: 'short', timeStyle: 'medium' }).format(new Date(ms));
  return `${local} ${tz} (${new Date(ms).toISOString().replace('.000Z', 'Z')})`;
}

export interface AddOptions {
  /** A schedule, or else `on`: exactly one trigger per routine. */
  cron?: string;
  /** An event trigger: webhook:<name>, subject:talon.events.<…>, document[:<prefix>]. */
  on?: string;
  /** A heartbeat (with --cron): delivers only when the model reports something. */
  heartbeat?: boolean;
  /** The heartbeat's checklist: a memory document key of the routine's user. */
  checklist?: string;
  tz: string;
  prompt: string;
  user: string;
  deliver: string;
  missed: string;
  /** The agent profile that answers its runs (talon agents). */
  agent?: string;
}

/** The routine record `add` writes; throws RoutineRuleError naming what is wrong. Pure. */
export function routineFromOptions(name: string, o: AddOptions, now: number, by: string): Routine {
  const r: Routine = {
    name: checkRoutineName(name),
    cron: (o.cron ?? '').trim(),
    timeZone: checkTimeZone(o.tz),
    prompt: o.prompt,
    userId: o.user,
    deliver: o.deliver,
    missed: parseMissed(o.missed),
    paused: false,
    createdAtMs: now,
    updatedAtMs: now,
    activeSinceMs: now,
    createdBy: by,
    trigger: o.on === undefined ? '' : triggerString(parseTrigger(o.on)),
    heartbeat: o.heartbeat ?? false,
    checklist: o.checklist ?? '',
    ...(o.agent !== undefined ? { agent: o.agent } : {}),
  };
  checkRoutine(r);
  if (r.agent !== undefined && !isAgentName(r.agent))
    throw new RoutineRuleError(
      `--agent ${JSON.stringify(r.agent.slice(0, 40))} must be an agent's name (${AGENT_NAME_RULE}; see \`talon agents list\`)`,
    );
  return r;
}

export async function addRoutine(nc: NatsConnection, r: Routine): Promise<void> {
  const user = await (await new Users(nc).open()).get(r.userId);
  if (!user)
    throw new CliError(`no registered user ${r.userId}: add it first with \`talon users add ${r.userId}\` (see \`talon users list\`)`);
  if (user.disabledAtMs > 0) throw new CliError(`user ${r.userId} is disabled; enable it first with \`talon users enable ${r.userId}\``);
  if (r.agent && !(await (await new AgentProfiles(nc).open()).get(r.agent)))
    throw new CliError(`no agent ${r.agent}: add it first with \`talon agents add ${r.agent} …\` (see \`talon agents list\`)`);
  if (!(await (await new Routines(nc).open()).create(r)))
    throw new CliError(
      `a routine named ${r.name} exists already: remove it first with \`talon routines rm ${r.name}\`, or pick another name`,
    );
}

export interface RoutineListing {
  routine: Routine;
  next: number | undefined;
  runs: RoutineRun[];
}

export async function listRoutines(nc: NatsConnection, runsEach: number, now = Date.now()): Promise<RoutineListing[]> {
  const [routines, runs] = await Promise.all([new Routines(nc).open(), new RoutineRuns(nc).open()]);
  const out: RoutineListing[] = [];
  for (const r of (await routines.list()).sort((a, b) => a.name.localeCompare(b.name))) {
    let next: number | undefined;
    try {
      next = r.paused || r.trigger !== '' ? undefined : nextSlotAfter(parseSchedule(r.cron, r.timeZone), Math.max(now, r.activeSinceMs));
    } catch {
      next = undefined;
    }
    out.push({ routine: r, next, runs: await runs.recent(r.name, runsEach) });
  }
  return out;
}

/** Changes a routine by compare-and-set; `change` sees the current record. */
async function changeRoutine(nc: NatsConnection, name: string, change: (r: Routine) => Routine): Promise<Routine> {
  const routines = await new Routines(nc).open();
  for (let i = 0; i < 5; i++) {
    const cur = await routines.get(name);
    if (!cur) throw new CliError(`no routine ${name} (see \`talon routines list\`)`);
    const next = change(cur.routine);
    try {
      await routines.update(next, cur.revision);
      return next;
    } catch (err) {
      if (!isWrongSequence(err)) throw err;
    }
  }
  throw new CliError(`routine ${name} kept changing while it was updated; try again`);
}

export function pauseRoutine(nc: NatsConnection, name: string, paused: boolean, now = Date.now()): Promise<Routine> {
  // Resuming moves active_since on: slots that passed while paused are never run.
  return changeRoutine(nc, name, (r) => ({ ...r, paused, updatedAtMs: now, ...(paused ? {} : { activeSinceMs: now }) }));
}

export async function removeRoutine(nc: NatsConnection, name: string): Promise<number> {
  const routines = await new Routines(nc).open();
  if (!(await routines.get(name))) throw new CliError(`no routine ${name} (see \`talon routines list\`)`);
  await routines.remove(name);
  return (await new RoutineRuns(nc).open()).removeAll(name);
}

/** Asks the orchestrators for one run now; resolves with the run once one took it (or undefined after `waitMs`). */
export async function runNow(nc: NatsConnection, name: string, waitMs: number, now = Date.now()): Promise<RoutineRun | undefined> {
  const r = await (await new Routines(nc).open()).get(name);
  if (!r) throw new CliError(`no routine ${name} (see \`talon routines list\`)`);
  if (r.routine.paused) throw new CliError(`routine ${name} is paused: resume it first with \`talon routines resume ${name}\``);
  const runs = await new RoutineRuns(nc).open();
  if ((await runs.create(newRun(name, now, { manual: true, requestedAtMs: now }))) === false)
    throw new CliError(`a run of ${name} was requested at this very millisecond already; try again`);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    const cur = await runs.get(name, now);
    const s = cur?.run.state;
    if (s !== undefined && s !== RoutineRunState.ROUTINE_RUN_STATE_REQUESTED && s !== RoutineRunState.ROUTINE_RUN_STATE_CLAIMED)
      return cur!.run;
    await new Promise((res) => setTimeout(res, 200));
  }
  return undefined;
}

/** How events reach an event routine (after `add`). */
export function triggerHint(trigger: string): string {
  const t = parseTrigger(trigger);
  switch (t.kind) {
    case 'webhook':
      return `It runs on each POST /hooks/routine/${t.name} signed like the generic webhook (X-Talon-Timestamp, X-Talon-Signature with the key named by GATEWAY_WEBHOOK_SIGNING_SECRET); events go through ${webhookEventSubject(t.name)}.`;
    case 'subject':
      return `It runs on each message published on ${t.subject} (admin NATS credentials; the payload is given to the turn as untrusted data).`;
    case 'document':
      return `It runs when a memory document${t.prefix ? ` whose key starts with ${t.prefix}` : ''} is imported for the routine’s user.`;
    default:
      return '';
  }
}

function describeRun(run: RoutineRun): string {
  const state = runStateName(run.state);
  // An event's run is keyed by the event's sequence: its time is when it was received.
  const at = run.event ? run.requestedAtMs : run.scheduledAtMs;
  const parts = [`  ${new Date(at).toISOString()}  ${state.padEnd(9)}`];
  if (run.firedAtMs > 0) parts.push(`fired +${run.firedAtMs - run.scheduledAtMs} ms`);
  if (run.manual) parts.push('run-now');
  if (run.missed) parts.push('missed slot, run once');
  if (run.takeovers > 0) parts.push(`taken over ${run.takeovers}×`);
  if (run.event) parts.push(`event=${run.event}`);
  if (run.outcome) parts.push(run.outcome === 'quiet' ? 'heartbeat: quiet (HEARTBEAT_OK)' : `heartbeat: ${run.outcome}`);
  if (run.error) parts.push(`error=${run.error}`);
  if (run.turnId) parts.push(`turn=${run.turnId}`);
  return parts.join('  ');
}

export function registerRoutines(program: Command): void {
  const routines = program
    .command('routines')
    .description('turns that start on a schedule: each run is one ordinary turn of the routine’s user, fired once across orchestrators');
  routines
    .command('add')
    .description('add a routine (checked first: trigger, time zone, user, delivery)')
    .argument('<name>', '1-48 characters of a-z, 0-9, _ and -')
    .option(
      '--cron <expr>',
      "when to run: 5 cron fields (minute hour day-of-month month day-of-week), e.g. '0 8 * * 1-5', or 6 with seconds first",
    )
    .option(
      '--on <event>',
      'instead of --cron, run once per event: webhook:<name> (signed POST /hooks/routine/<name>), subject:talon.events.<…> (a NATS subject under talon.events.), or document[:<key prefix>] (a memory document imported for the user)',
    )
    .option(
      '--heartbeat',
      'with --cron: go through --checklist and deliver only when something needs attention (else the model answers HEARTBEAT_OK)',
    )
    .option('--checklist <key>', 'the heartbeat’s checklist: a memory document key of the routine’s user')
    .option('--tz <zone>', 'IANA time zone the cron expression is read in, e.g. Europe/Berlin', 'UTC')
    .requiredOption('--prompt <text>', 'the message the agent gets on every run')
    .requiredOption('--user <id>', 'the registered Talon user the routine runs as (its memory, approvals and audit)')
    .option(
      '--deliver <target>',
      'where the answer goes: web (a conversation in the web UI), telegram:<chat id> or webhook:<thread>',
      'web',
    )
    .option('--missed <policy>', 'slots missed while no orchestrator ran: skip, or run-once (the most recent one, once)', 'skip')
    .option('--agent <name>', 'the agent profile that answers its runs (talon agents); default: the usual routing')
    .action(async (name: string, o: AddOptions) => {
      const now = Date.now();
      const r = rule(() => routineFromOptions(name, o, now, `cli:${userInfo().username}`));
      await withAdminNats((nc) => addRoutine(nc, r));
      console.log(
        `Routine ${r.name} added: runs as ${r.userId}${r.agent ? `, answered by agent ${r.agent}` : ''}, delivers to ${r.deliver}${r.trigger ? '' : `, missed slots: ${missedName(r.missed)}`}${r.heartbeat ? `, heartbeat over ${r.checklist} (quiet unless something needs attention)` : ''}.`,
      );
      if (r.trigger !== '') {
        console.log(triggerHint(r.trigger));
        return;
      }
      const next = nextSlotAfter(parseSchedule(r.cron, r.timeZone), now);
      console.log(next === undefined ? 'It has no future run.' : `Next run: ${showInstant(next, r.timeZone)}.`);
    });
  routines
    .command('list')
    .description('routines with their next run and their last runs (ok, failed, fired, claimed)')
    .option('--runs <n>', 'last runs shown per routine', '5')
    .action(async (o: { runs: string }) => {
      const n = Number(o.runs);
      if (!Number.isInteger(n) || n < 0 || n > 20) throw new CliError('--runs must be a whole number from 0 to 20');
      const rows = await withAdminNats((nc) => listRoutines(nc, n));
      if (rows.length === 0) {
        console.log("No routines. Add one with: talon routines add NAME --cron '0 8 * * 1-5' --tz Europe/Berlin --prompt TEXT --user USER");
        return;
      }
      for (const { routine: r, next, runs } of rows) {
        const state = r.paused ? 'paused' : 'active';
        const when = r.trigger ? `on=${r.trigger}` : `cron='${r.cron}' tz=${r.timeZone}`;
        console.log(
          `${r.name}  ${state}  ${when} user=${r.userId} deliver=${r.deliver}${r.trigger ? '' : ` missed=${missedName(r.missed)}`}${r.heartbeat ? ` heartbeat checklist=${r.checklist}` : ''}${r.agent ? ` agent=${r.agent}` : ''}`,
        );
        console.log(`  next: ${next === undefined ? '-' : showInstant(next, r.timeZone)}`);
        if (runs.length === 0) console.log('  no runs yet');
        for (const run of runs) console.log(describeRun(run));
      }
    });
  routines
    .command('run-now')
    .description('run a routine once now (any orchestrator takes the request), besides its schedule')
    .argument('<name>')
    .action(async (name: string) => {
      const run = await withAdminNats((nc) =>
        runNow(
          nc,
          rule(() => checkRoutineName(name)),
          10_000,
        ),
      );
      if (!run) {
        console.log(`Run of ${name} requested; no orchestrator has taken it yet. It runs when one does (see \`talon routines list\`).`);
        return;
      }
      console.log(
        `Run of ${name} ${runStateName(run.state)}${run.turnId ? ` as turn ${run.turnId}` : ''}${run.error ? ` (${run.error})` : ''}.`,
      );
    });
  for (const verb of ['pause', 'resume'] as const) {
    routines
      .command(verb)
      .description(
        verb === 'pause'
          ? 'stop running a routine until it is resumed'
          : 'run a paused routine again (slots missed while paused are not run)',
      )
      .argument('<name>')
      .action(async (name: string) => {
        const r = await withAdminNats((nc) =>
          pauseRoutine(
            nc,
            rule(() => checkRoutineName(name)),
            verb === 'pause',
          ),
        );
        console.log(`Routine ${r.name} ${verb === 'pause' ? 'paused' : 'resumed'}.`);
      });
  }
  routines
    .command('rm')
    .description('remove a routine and its recorded runs (a run already queued still answers)')
    .argument('<name>')
    .action(async (name: string) => {
      const n = await withAdminNats((nc) =>
        removeRoutine(
          nc,
          rule(() => checkRoutineName(name)),
        ),
      );
      console.log(`Routine ${name} removed (${n} recorded run(s) deleted).`);
    });
}
