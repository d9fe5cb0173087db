// Routines: turns that start on a schedule. Every replica runs this scheduler; the
// schedule math is @talon/records/routines' (pure), this file only wires it to time
// and NATS. Each due slot is claimed with a KV create on `run.<routine>.<slot>` in
// talon_routine_runs — the replica whose create succeeds fires it, the others see the
// key. A claim carries an owner and a lease (ORCHESTRATOR_ROUTINE_LEASE_MS): a replica
// that dies between claiming and publishing leaves a CLAIMED record whose lease lapses,
// and a replica that saw the claim takes it over by compare-and-set and publishes the
// same turn. The turn is an ordinary InboundMessage on talon.inbound.routine with
// Nats-Msg-Id = its id (routine-<name>-<slot>), so a publish repeated by a takeover
// within the stream's 120 s duplicate window is dropped; the lease is kept well below it.
// The turn then runs like any other (worker.ts: context, tools, approvals, memory,
// audit); when its reply goes out, `recordOutcome` marks the run ok or failed.
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { SUBJECTS, KV_BUCKETS } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import { tracedHeaders, type NatsConnection } from '@talon/kit/nats';
import { InboundMessage, RoutineRun, RoutineRunState, type OutboundMessage, type Routine } from '@talon/proto';
import { Users } from '@talon/records/identity';
import {
  checkRoutine,
  claimed,
  claimVerdict,
  dueSlot,
  finished,
  fired,
  newRun,
  nextWake,
  parseRoutineTurnId,
  routineInbound,
  RoutineRuns,
  Routines,
  type Schedule,
  type Target,
} from '@talon/records/routines';
import type { TextRedactor } from './redaction.ts';

export interface RoutineRunnerOptions {
  nc: NatsConnection;
  log: Logger;
  /** This replica's id on the claims it holds. */
  owner: string;
  leaseMs: number;
  /** A slot at most this late is still run on time; older ones are missed (the routine's policy). */
  graceMs: number;
  redactor: TextRedactor;
  /** Longest sleep between looks (routine definitions are also re-read then). */
  maxWaitMs?: number;
  now?: () => number;
}

interface Entry {
  routine: Routine;
  schedule: Schedule;
  target: Target;
  /** Until when this replica has looked at the routine's slots (exclusive lower bound of the next look). */
  cursor: number;
}

export class RoutineRunner {
  private readonly o: Required<Omit<RoutineRunnerOptions, 'now'>> & { now: () => number };
  private readonly js: JetStreamClient;
  private routines!: Routines;
  private runs!: RoutineRuns;
  private opened = false;
  private users!: Users;
  private readonly entries = new Map<string, Entry>();
  /** Definitions that failed their check, logged once per revision of the text. */
  private readonly invalid = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly waits = new Map<string, NodeJS.Timeout>();
  private readonly subs: Array<{ unsubscribe(): void }> = [];
  private stopped = false;
  private lastReload = 0;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;

  constructor(o: RoutineRunnerOptions) {
    this.o = { maxWaitMs: 30_000, now: Date.now, ...o };
    this.js = jetstream(o.nc);
  }

  /** Opens the buckets: enough to record outcomes (every replica runs routine turns, scheduler or not). */
  async open(): Promise<void> {
    this.routines = await new Routines(this.o.nc).open();
    this.users = await new Users(this.o.nc).open();
    this.runs = await new RoutineRuns(this.o.nc).open();
    this.opened = true;
  }

  /** Starts scheduling (after open). */
  async start(): Promise<void> {
    // Changes arrive on plain subscriptions to the buckets' subjects (no consumers).
    this.subs.push(
      this.o.nc.subscribe(`$KV.${KV_BUCKETS.routines}.>`, {
        callback: () =>
          void this.reload().then(
            () => this.arm(),
            () => undefined,
          ),
      }),
      this.o.nc.subscribe(`$KV.${KV_BUCKETS.routineRuns}.>`, {
        callback: (err, m) => {
          if (err || m.data.length === 0) return;
          try {
            const run = RoutineRun.decode(m.data);
            if (run.state === RoutineRunState.ROUTINE_RUN_STATE_REQUESTED) void this.contend(run.routine, run.scheduledAtMs);
          } catch {
            /* not a run record */
          }
        },
      }),
    );
    void (async () => {
      for await (const s of this.o.nc.status()) if (s.type === 'reconnect' && !this.stopped) void this.resync();
    })();
    await this.resync();
    this.o.log.info({ routines: this.entries.size, lease_ms: this.o.leaseMs, grace_ms: this.o.graceMs }, 'routines: scheduler started');
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const t of this.waits.values()) clearTimeout(t);
    this.waits.clear();
    for (const s of this.subs) s.unsubscribe();
  }

  /** Definitions, open requests and claims (at start and after a reconnect: subscriptions may have missed them). */
  private async resync(): Promise<void> {
    try {
      await this.reload();
      for (const r of await this.runs.all()) {
        const open = r.state === RoutineRunState.ROUTINE_RUN_STATE_REQUESTED || r.state === RoutineRunState.ROUTINE_RUN_STATE_CLAIMED;
        if (open) void this.contend(r.routine, r.scheduledAtMs);
      }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'routines: could not read routines; retrying at the next look');
    }
    this.look();
  }

  /** Reads the definitions; a change seen while a read is under way is read again after it. */
  private reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        await this.readDefinitions();
      } while (this.reloadAgain);
    })().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async readDefinitions(): Promise<void> {
    const list = await this.routines.list();
    this.lastReload = this.o.now();
    const seen = new Set<string>();
    for (const r of list) {
      seen.add(r.name);
      try {
        const { schedule, target } = checkRoutine(r);
        const prev = this.entries.get(r.name);
        this.entries.set(r.name, { routine: r, schedule, target, cursor: prev?.cursor ?? 0 });
        this.invalid.delete(r.name);
      } catch (err) {
        this.entries.delete(r.name);
        const msg = (err as Error).message;
        if (this.invalid.get(r.name) !== msg) this.o.log.error({ routine: r.name, err: msg }, 'routines: invalid routine record; not run');
        this.invalid.set(r.name, msg);
      }
    }
    for (const name of this.entries.keys()) if (!seen.has(name)) this.entries.delete(name);
  }

  /** Sleeps until the next slot of any routine (at most maxWaitMs). */
  private arm(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const now = this.o.now();
    const schedules = [...this.entries.values()].map((e) => ({ s: e.schedule, paused: e.routine.paused }));
    const wake = nextWake(schedules, now, this.o.maxWaitMs);
    this.timer = setTimeout(() => this.look(), Math.max(0, wake - now));
  }

  /** Fires what is due now, then sleeps again. */
  private look(): void {
    if (this.stopped) return;
    const now = this.o.now();
    if (now - this.lastReload >= this.o.maxWaitMs)
      void this.reload().then(
        () => this.arm(),
        () => undefined,
      );
    for (const e of this.entries.values()) {
      const d = dueSlot(e.schedule, e.routine, e.cursor, now, this.o.graceMs);
      const looked = e.cursor > 0;
      e.cursor = now;
      // On a replica's first look, older slots were another replica's to fire: only a stall of this one is worth a line.
      if (d.kind !== 'none' && looked && d.skipped > 0)
        this.o.log.warn(
          { routine: e.routine.name, skipped: d.skipped },
          'routines: this replica stalled past slots; only the newest is considered',
        );
      if (d.kind === 'fire') void this.claimNew(e.routine.name, d.slotMs, d.missed);
      else if (d.kind === 'skip') void this.noteSkipped(e.routine.name, d.slotMs);
    }
    this.arm();
  }

  /** Says so when a slot past the grace was never fired (no replica ran then) and the policy skips it. */
  private async noteSkipped(name: string, slotMs: number): Promise<void> {
    if (await this.runs.get(name, slotMs).catch(() => 'unknown')) return;
    this.o.log.info(
      { routine: name, slot: new Date(slotMs).toISOString() },
      'routines: a slot missed while no orchestrator ran is skipped (--missed skip)',
    );
  }

  /** First claim of a slot: a create, which fails when another replica (or a request) has the key. */
  private async claimNew(name: string, slotMs: number, missed: boolean): Promise<void> {
    try {
      const run = claimed(newRun(name, slotMs, { missed }), this.o.owner, this.o.now(), this.o.leaseMs, false);
      const rev = await this.runs.create(run);
      if (rev === false) return await this.contend(name, slotMs);
      if (missed)
        this.o.log.info(
          { routine: name, slot: new Date(slotMs).toISOString() },
          'routines: running a missed slot once (--missed run-once)',
        );
      await this.publish(run);
    } catch (err) {
      this.o.log.warn({ routine: name, slot: slotMs, err: (err as Error).message }, 'routines: could not claim a slot');
    }
  }

  /** Looks at an existing run: takes a request or a lapsed claim, waits for a live one's lease, or leaves it. */
  private async contend(name: string, slotMs: number): Promise<void> {
    if (this.stopped) return;
    const key = `${name}.${slotMs}`;
    clearTimeout(this.waits.get(key));
    this.waits.delete(key);
    try {
      const cur = await this.runs.get(name, slotMs);
      if (!cur) return;
      const now = this.o.now();
      const v = claimVerdict(cur.run, now);
      if (v.kind === 'done') return;
      if (v.kind === 'wait') {
        // A little after the lease, spread so replicas do not all try at once.
        const t = setTimeout(() => void this.contend(name, slotMs), v.untilMs - now + 50 + Math.floor(Math.random() * 200));
        t.unref();
        this.waits.set(key, t);
        return;
      }
      // The deadline counts from the first claim: a run-now request made while no orchestrator ran still runs.
      const since = cur.run.firstClaimedAtMs || now;
      if (now - since > Math.max(this.o.graceMs, 4 * this.o.leaseMs)) {
        // Claimed again and again without being fired (the turn could not be queued): give up on this slot.
        await this.runs.update(finished(cur.run, 'not_fired', now), cur.revision);
        this.o.log.error({ routine: name, slot: slotMs }, 'routines: a slot could not be fired in time; recorded as failed');
        return;
      }
      const next = claimed(cur.run, this.o.owner, now, this.o.leaseMs, v.takeover);
      // Another replica took it first: look again (its claim is then watched until it fires or lapses).
      if ((await this.runs.update(next, cur.revision)) === false) return await this.contend(name, slotMs);
      if (v.takeover)
        this.o.log.warn({ routine: name, slot: slotMs, from: cur.run.owner }, 'routines: took over a claim whose lease lapsed');
      await this.publish(next);
    } catch (err) {
      this.o.log.warn({ routine: name, slot: slotMs, err: (err as Error).message }, 'routines: could not look at a run');
    }
  }

  /** Publishes the claimed run's turn, then marks it fired. On failure the claim lapses and is taken over (or retried here). */
  private async publish(run: RoutineRun): Promise<void> {
    const name = run.routine;
    const slot = run.scheduledAtMs;
    const fail = (code: string) => this.runs.modify(name, slot, (r) => finished(r, code, this.o.now()));
    try {
      // A run-now request may come before this replica has read the new routine.
      if (!this.entries.has(name)) await this.reload();
      const e = this.entries.get(name);
      if (!e) {
        await fail('routine_removed');
        return;
      }
      const user = await this.users.get(e.routine.userId);
      if (!user || user.disabledAtMs > 0) {
        await fail('user_disabled');
        this.o.log.warn({ routine: name, user: e.routine.userId }, 'routines: the routine’s user is unknown or disabled; not run');
        return;
      }
      // An operator's prompt is redacted like every user message before it is queued (invariant 1).
      const [red] = await this.o.redactor.redactTexts([e.routine.prompt]);
      const prompt = red && red.labels.length > 0 ? red.text : e.routine.prompt;
      const inbound = routineInbound(e.routine, e.target, slot, prompt, red?.labels ?? [], this.o.now());
      await this.js.publish(SUBJECTS.inbound('routine'), InboundMessage.encode(inbound).finish(), {
        msgID: inbound.id,
        headers: tracedHeaders(),
        timeout: 5000,
      });
      const firedAt = this.o.now();
      await this.runs.modify(name, slot, (r) => fired(r, firedAt));
      this.o.log.info(
        { routine: name, slot: new Date(slot).toISOString(), inbound_id: inbound.id, late_ms: firedAt - slot },
        'routines: fired',
      );
      await this.runs.prune(name).catch(() => 0);
    } catch (err) {
      this.o.log.warn(
        { routine: name, slot, err: (err as Error).message },
        'routines: could not queue the turn; the claim lapses and is tried again',
      );
      const key = `${name}.${slot}`;
      const t = setTimeout(() => void this.contend(name, slot), this.o.leaseMs + 50);
      t.unref();
      this.waits.set(key, t);
    }
  }

  /** TurnEngine's onReplied: a routine's turn answered (ok) or ended with an error reply (failed). */
  recordOutcome(inbound: InboundMessage, msg: OutboundMessage): void {
    const id = parseRoutineTurnId(inbound.id);
    if (!id || !this.opened) return;
    const now = this.o.now();
    void this.runs
      .modify(id.name, id.scheduledAtMs, (r) => finished(r, msg.error?.code ?? '', now))
      .catch((err: Error) =>
        this.o.log.warn({ inbound_id: inbound.id, err: err.message }, 'routines: could not record the outcome of a run'),
      );
  }
}
