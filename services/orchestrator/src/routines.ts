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
// Event routines (--on) are fired from TALON_EVENTS instead: one durable consumer shared
// by the replicas hands each event to one of them, which claims `run.<routine>.<event
// seq>` per matching routine the same way, queues the turn, and acks the event only then
// (a replica that dies first leaves the event to be redelivered, and its claim taken
// over when the lease lapses). A heartbeat's turn replies to nobody (`kept`); its answer
// is delivered here, unless it is the HEARTBEAT_OK sentinel.
import { nanos } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
} from '@nats-io/jetstream';
import { CONSUMERS, SUBJECTS, KV_BUCKETS, STREAMS, replyDelivery } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import { isConsumerNotFound, tracedHeaders, type NatsConnection } from '@talon/kit/nats';
import { InboundMessage, OutboundMessage, RoutineRun, RoutineRunState, type Routine } from '@talon/proto';
import { Users } from '@talon/records/identity';
import {
  checkRoutine,
  claimed,
  claimVerdict,
  dueSlot,
  eventFires,
  finished,
  heartbeatDecision,
  fired,
  newRun,
  nextWake,
  parseDeliver,
  parseRoutineTurnId,
  routineInbound,
  RoutineRuns,
  Routines,
  type RoutineEvent,
  type Schedule,
  type Target,
  type Trigger,
} from '@talon/records/routines';
import type { TextRedactor } from './redaction.ts';
import { eventPrompt, heartbeatPrompt, readEvent } from './routine-events.ts';

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
  /** A heartbeat's checklist: the routine user's memory document of that key, if memory has it. */
  checklist?: (userId: string, key: string) => Promise<string | undefined>;
}

interface Entry {
  routine: Routine;
  /** A cron routine's schedule; undefined for an event routine. */
  schedule: Schedule | undefined;
  trigger: Trigger;
  target: Target;
  /** Until when this replica has looked at the routine's slots (exclusive lower bound of the next look). */
  cursor: number;
}

export class RoutineRunner {
  private readonly o: Required<Omit<RoutineRunnerOptions, 'now' | 'checklist'>> &
    Pick<RoutineRunnerOptions, 'checklist'> & { now: () => number };
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
  private events: ConsumerMessages | undefined;

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
    await this.startEvents();
    this.o.log.info({ routines: this.entries.size, lease_ms: this.o.leaseMs, grace_ms: this.o.graceMs }, 'routines: scheduler started');
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const t of this.waits.values()) clearTimeout(t);
    this.waits.clear();
    for (const s of this.subs) s.unsubscribe();
    void this.events?.close();
  }

  /** The durable consumer of TALON_EVENTS shared by every replica: each event is handled by one of them. */
  private async startEvents(): Promise<void> {
    const jsm = await jetstreamManager(this.o.nc, { checkAPI: false });
    // Redelivered only after a claim's lease could have lapsed (a dead replica's events go to another).
    const cfg = {
      durable_name: CONSUMERS.orchestratorEvents,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(Math.max(30_000, 2 * this.o.leaseMs)),
      max_ack_pending: 64,
    };
    try {
      await jsm.consumers.info(STREAMS.events.name, CONSUMERS.orchestratorEvents);
    } catch (err) {
      if (!isConsumerNotFound(err)) throw err;
      await jsm.consumers.add(STREAMS.events.name, cfg);
    }
    const consumer = await this.js.consumers.get(STREAMS.events.name, CONSUMERS.orchestratorEvents);
    this.events = await consumer.consume({ max_messages: 16 });
    void (async () => {
      for await (const m of this.events!) await this.onEvent(m);
    })().catch((err: Error) => this.o.log.error({ err: err.message }, 'routines: the event consumer stopped'));
  }

  /** Fires every active routine the event matches, then acks it; on trouble it is redelivered later. */
  private async onEvent(m: JsMsg): Promise<void> {
    const { event, payload } = readEvent(m.subject, m.seq, m.data);
    try {
      if (this.o.now() - this.lastReload > 1000) await this.reload();
      const matching = [...this.entries.values()].filter((e) => !e.routine.paused && eventFires(e.trigger, e.routine.userId, event));
      let retryInMs = 0;
      for (const e of matching) retryInMs = Math.max(retryInMs, await this.fireEvent(e, event, payload));
      if (retryInMs > 0) m.nak(retryInMs);
      else m.ack();
      if (matching.length === 0) this.o.log.debug({ subject: event.subject }, 'routines: an event no routine listens to');
    } catch (err) {
      this.o.log.warn({ subject: event.subject, err: (err as Error).message }, 'routines: could not fire an event; it is redelivered');
      m.nak(this.o.leaseMs + 50);
    }
  }

  /** Claims and fires one routine's run of an event; the delay after which to look again (0: done). */
  private async fireEvent(e: Entry, event: RoutineEvent, payload: string): Promise<number> {
    const name = e.routine.name;
    const now = this.o.now();
    const fresh = { ...newRun(name, event.seq, { requestedAtMs: now }), event: `${event.subject}#${event.seq}` };
    let run = claimed(fresh, this.o.owner, now, this.o.leaseMs, false);
    if ((await this.runs.create(run)) === false) {
      // Fired already, or held by a replica that got this event before (its lease, or a takeover).
      const cur = await this.runs.get(name, event.seq);
      if (!cur) return this.o.leaseMs;
      const v = claimVerdict(cur.run, now);
      if (v.kind === 'done') return 0;
      if (v.kind === 'wait') return v.untilMs - now + 50;
      run = claimed(cur.run, this.o.owner, now, this.o.leaseMs, v.takeover);
      if ((await this.runs.update(run, cur.revision)) === false) return this.o.leaseMs;
    }
    const queued = await this.publish(run, payload);
    return queued ? 0 : this.o.leaseMs + 50;
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
        const { schedule, trigger, target } = checkRoutine(r);
        const prev = this.entries.get(r.name);
        this.entries.set(r.name, { routine: r, schedule, trigger, target, cursor: prev?.cursor ?? 0 });
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
    const schedules = [...this.entries.values()].flatMap((e) => (e.schedule ? [{ s: e.schedule, paused: e.routine.paused }] : []));
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
      if (!e.schedule) continue;
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
      // An event's run is retried by the event's redelivery (which carries its payload), never here.
      if (!cur || cur.run.event !== '') return;
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

  /**
   * Publishes the claimed run's turn, then marks it fired. On failure the claim lapses and is taken over (or
   * retried here; an event's run by the event's redelivery). `payload`: the event of an event routine's run.
   * Resolves false when the turn could not be queued.
   */
  private async publish(run: RoutineRun, payload?: string): Promise<boolean> {
    const name = run.routine;
    const slot = run.scheduledAtMs;
    const fail = (code: string) => this.runs.modify(name, slot, (r) => finished(r, code, this.o.now()));
    try {
      // A run-now request may come before this replica has read the new routine.
      if (!this.entries.has(name)) await this.reload();
      const e = this.entries.get(name);
      if (!e) {
        await fail('routine_removed');
        return true;
      }
      const user = await this.users.get(e.routine.userId);
      if (!user || user.disabledAtMs > 0) {
        await fail('user_disabled');
        this.o.log.warn({ routine: name, user: e.routine.userId }, 'routines: the routine’s user is unknown or disabled; not run');
        return true;
      }
      const text = await this.promptOf(e, run, payload);
      // An operator's prompt, an event's payload and a checklist are redacted like every user message before
      // the turn is queued (invariant 1).
      const [red] = await this.o.redactor.redactTexts([text]);
      const prompt = red && red.labels.length > 0 ? red.text : text;
      let inbound = routineInbound(e.routine, e.target, slot, prompt, red?.labels ?? [], this.o.now());
      // A heartbeat replies to nobody: recordOutcome delivers its answer unless it is the sentinel.
      if (e.routine.heartbeat && inbound.reply) inbound = { ...inbound, reply: { ...inbound.reply, subject: SUBJECTS.keptReply } };
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
      return true;
    } catch (err) {
      this.o.log.warn(
        { routine: name, slot, err: (err as Error).message },
        'routines: could not queue the turn; the claim lapses and is tried again',
      );
      if (payload !== undefined) return false;
      const key = `${name}.${slot}`;
      const t = setTimeout(() => void this.contend(name, slot), this.o.leaseMs + 50);
      t.unref();
      this.waits.set(key, t);
      return false;
    }
  }

  /** The text of a run's user message before redaction: the prompt, with the event or the heartbeat's checklist. */
  private async promptOf(e: Entry, run: RoutineRun, payload: string | undefined): Promise<string> {
    const r = e.routine;
    if (payload !== undefined) return eventPrompt(r.prompt, r.trigger, run.event.slice(0, run.event.lastIndexOf('#')), payload);
    if (!r.heartbeat) return r.prompt;
    const checklist = await this.o.checklist?.(r.userId, r.checklist).catch((err: Error) => {
      this.o.log.warn({ routine: r.name, err: err.message }, 'routines: could not read a heartbeat’s checklist from memory');
      return undefined;
    });
    return heartbeatPrompt(r.prompt, r.checklist, checklist);
  }

  /** TurnEngine's onReplied: a routine's turn answered (ok) or ended with an error reply (failed). */
  recordOutcome(inbound: InboundMessage, msg: OutboundMessage): void {
    const id = parseRoutineTurnId(inbound.id);
    if (!id || !this.opened) return;
    void this.outcome(inbound, msg, id).catch((err: Error) =>
      this.o.log.warn({ inbound_id: inbound.id, err: err.message }, 'routines: could not record the outcome of a run'),
    );
  }

  /** Records a run's outcome; a heartbeat's answer is delivered first, unless it is the sentinel (quiet). */
  private async outcome(inbound: InboundMessage, msg: OutboundMessage, id: { name: string; scheduledAtMs: number }): Promise<void> {
    let error = msg.error?.code ?? '';
    let outcome = '';
    if (error === '' && inbound.reply?.subject === SUBJECTS.keptReply) {
      const r = (await this.routines.get(id.name))?.routine;
      if (r?.heartbeat) {
        if (heartbeatDecision(msg.content) === 'quiet') outcome = 'quiet';
        else {
          try {
            const target = parseDeliver(r.deliver, r.name);
            // `web`: the answer is in the user's conversation already (like any routine's), nothing to send.
            if (replyDelivery(target.replySubject) === 'durable')
              await this.js.publish(target.replySubject, OutboundMessage.encode(msg).finish(), {
                msgID: `reply:${inbound.id}`,
                headers: tracedHeaders(),
                timeout: 5000,
              });
            outcome = 'delivered';
          } catch (err) {
            error = 'deliver_failed';
            this.o.log.warn({ routine: r.name, err: (err as Error).message }, 'routines: could not deliver a heartbeat’s answer');
          }
        }
        this.o.log.info({ routine: r.name, inbound_id: inbound.id, outcome: outcome || error }, 'routines: heartbeat answered');
      }
    }
    const now = this.o.now();
    await this.runs.modify(id.name, id.scheduledAtMs, (r) => ({ ...finished(r, error, now), outcome }));
  }
}
