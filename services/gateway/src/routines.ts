// GET /v1/routines: the caller's own routines (read-only; operators manage them with
// `talon routines`), each with its next run and its last runs, for the web UI. Read
// from talon_routines and talon_routine_runs through @talon/records/routines, the
// rules the orchestrators fire them by.
import type { NatsConnection } from '@talon/kit/nats';
import type { Routine, RoutineRun } from '@talon/proto';
import { missedName, nextSlotAfter, parseDeliver, parseSchedule, RoutineRuns, Routines, runStateName } from '@talon/records/routines';

export interface RoutineJson {
  name: string;
  cron: string;
  timeZone: string;
  prompt: string;
  deliver: string;
  missed: 'skip' | 'run-once';
  paused: boolean;
  nextRunAtMs: number | null;
  /** Where the answers are: the conversation id and channel (`GET /v1/conversations/{id}/messages?channel=`). */
  conversation: { id: string; channel: string } | null;
  runs: Array<{
    scheduledAtMs: number;
    state: string;
    firedAtMs: number;
    finishedAtMs: number;
    error: string;
    manual: boolean;
    turnId: string;
  }>;
}

/** A routine as the API shows it. Pure. */
export function routineJson(r: Routine, runs: readonly RoutineRun[], now: number): RoutineJson {
  let next: number | undefined;
  let conversation: RoutineJson['conversation'] = null;
  try {
    const t = parseDeliver(r.deliver, r.name);
    conversation = { id: t.threadId, channel: t.channel };
    // An event routine (trigger) has no next run.
    next = r.paused ? undefined : nextSlotAfter(parseSchedule(r.cron, r.timeZone), Math.max(now, r.activeSinceMs));
  } catch {
    next = undefined;
  }
  return {
    name: r.name,
    cron: r.cron,
    timeZone: r.timeZone,
    prompt: r.prompt,
    deliver: r.deliver,
    missed: missedName(r.missed),
    paused: r.paused,
    nextRunAtMs: next ?? null,
    conversation,
    runs: runs.map((x) => ({
      scheduledAtMs: x.scheduledAtMs,
      state: runStateName(x.state),
      firedAtMs: x.firedAtMs,
      finishedAtMs: x.finishedAtMs,
      error: x.error,
      manual: x.manual,
      turnId: x.turnId,
    })),
  };
}

export class RoutinesView {
  private routines!: Routines;
  private runs!: RoutineRuns;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(): Promise<this> {
    this.routines = await new Routines(this.nc).open();
    this.runs = await new RoutineRuns(this.nc).open();
    return this;
  }

  /** The routines that run as `userId`, by name, each with its last `runsEach` runs (newest first). */
  async list(userId: string, runsEach = 5, now = Date.now()): Promise<RoutineJson[]> {
    const mine = (await this.routines.list()).filter((r) => r.userId === userId).sort((a, b) => a.name.localeCompare(b.name));
    return Promise.all(mine.map(async (r) => routineJson(r, await this.runs.recent(r.name, runsEach), now)));
  }
}
