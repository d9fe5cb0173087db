// Continues parked turns once their approval is decided. Two ways in: a plain
// subscription to talon_approvals (a decision arrives within milliseconds), and a
// sweep of talon_turns at start and every few seconds (decisions taken while no
// orchestrator ran, approvals that expired, replicas that died mid-continuation).
// A replica continues a turn only after claiming it: a compare-and-set on the
// turn's revision sets RUNNING, an owner and a lease it renews while it works, so
// exactly one replica continues and a dead one's turn is taken over when its lease
// runs out. The reply is stored in the turn with the turns to record before it is
// published, then recorded, then the turn is marked DONE: a crash in between publishes
// the same reply again (de-duplicated by its route, see TurnEngine.publish) or only
// records it, and never computes a second one. The sweep also finishes inbound turns
// whose answer is stored but not recorded (memory was down; deliver.ts).
import { randomBytes } from 'node:crypto';
import type { Subscription } from '@nats-io/transport-node';
import { KV_BUCKETS, replyDelivery } from '@talon/kit/subjects';
import { SpanKind, withSpan } from '@talon/kit/telemetry';
import type { InFlight } from '@talon/kit/lifecycle';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { Approval, ApprovalKind, InboundMessage, OutboundMessage, ParkedTurnStatus, type ParkedTurn, type Turn } from '@talon/proto';
import { isSettled, type ApprovalBook } from './approvals.ts';
import type { Slots } from './slots.ts';
import type { TurnEngine, ReplyBody } from './turn-engine.ts';
import { deliverAndRecord } from './deliver.ts';
import { doneRecord, progressFromProto, storedStatus, turnKey, type StoredTurn, type TurnStore } from './turn-state.ts';
import { TurnRun, afterClaim, recoverParked, type ParkedFacts } from './turn-machine.ts';
import { onFailure } from './turn.ts';
import { countTurnStep } from './metrics.ts';

/** A claim on one turn: every write is a compare-and-set on the revision this claim last wrote. */
export class Claim {
  private readonly store: Pick<TurnStore, 'update'>;
  private rev: number;
  private current: ParkedTurn;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private readonly owner: string;
  private readonly leaseMs: number;
  lost = false;

  constructor(store: Pick<TurnStore, 'update'>, stored: StoredTurn, owner: string, leaseMs: number) {
    this.store = store;
    this.rev = stored.revision;
    this.current = stored.turn;
    this.owner = owner;
    this.leaseMs = leaseMs;
  }

  get turn(): ParkedTurn {
    return this.current;
  }

  /** Claims a PARKED turn, or a RUNNING one whose lease ran out; false when someone else was first. */
  async take(now = Date.now()): Promise<boolean> {
    const ok = await this.write({
      ...this.current,
      status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING,
      owner: this.owner,
      leaseUntilMs: now + this.leaseMs,
      claims: this.current.claims + 1,
      updatedAtMs: now,
    });
    if (ok) this.keepAlive();
    return ok;
  }

  /** Renews the lease while this execution works on the turn (until a write hands it on, or stop()). */
  keepAlive(): void {
    if (this.timer || this.lost) return;
    this.timer = setInterval(() => void this.renew(), Math.max(200, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.lost || this.current.status !== ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING || this.current.owner !== this.owner) return;
    await this.write({ ...this.current, leaseUntilMs: Date.now() + this.leaseMs }).catch(() => undefined);
  }

  /** Writes the next state of the turn (serialised with lease renewals); false once the claim is lost. */
  write(next: ParkedTurn): Promise<boolean> {
    const run = this.chain.then(async () => {
      if (this.lost) return false;
      const rev = await this.store.update({ ...next, updatedAtMs: Date.now() }, this.rev);
      if (rev === undefined) {
        this.lost = true;
        this.stop();
        return false;
      }
      this.rev = rev;
      this.current = next;
      if (next.status !== ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING || next.owner !== this.owner) this.stop();
      return true;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** An obtained answer: the reply and the turns to record. */
interface Answer {
  body: ReplyBody;
  records: Turn[];
}

export interface ResumerOptions {
  nc: NatsConnection;
  log: Logger;
  turns: Pick<TurnStore, 'getKey' | 'update' | 'keys'>;
  approvals: Pick<ApprovalBook, 'settle' | 'create'>;
  engine: Pick<TurnEngine, 'continue' | 'outbound' | 'publish' | 'errorBody' | 'record' | 'failedRecords'>;
  slots: Slots;
  inFlight: InFlight;
  /** How long a claim holds without renewal (a dead replica's turn is taken over after it). */
  leaseMs: number;
  /** Interval of the sweep over stored turns. */
  sweepMs: number;
  /** Continuation attempts before the turn ends with an error reply. */
  maxAttempts: number;
}

export class TurnResumer {
  private readonly approvals: ResumerOptions['approvals'];
  private readonly engine: ResumerOptions['engine'];
  private readonly inFlight: ResumerOptions['inFlight'];
  private readonly leaseMs: ResumerOptions['leaseMs'];
  private readonly log: ResumerOptions['log'];
  private readonly maxAttempts: ResumerOptions['maxAttempts'];
  private readonly nc: ResumerOptions['nc'];
  private readonly slots: ResumerOptions['slots'];
  private readonly sweepMs: ResumerOptions['sweepMs'];
  private readonly turns: ResumerOptions['turns'];
  readonly owner = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private sub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private sweeping: Promise<void> | undefined;
  /** Turns seen DONE: they never change again, so sweeps skip them. */
  private readonly done = new Set<string>();
  private readonly active = new Set<string>();
  private readonly again = new Set<string>();
  /** Counters for tests and metrics. */
  readonly counters = { claims: 0, resumed: 0, sweeps: 0 };

  constructor(opts: ResumerOptions) {
    this.approvals = opts.approvals;
    this.engine = opts.engine;
    this.inFlight = opts.inFlight;
    this.leaseMs = opts.leaseMs;
    this.log = opts.log;
    this.maxAttempts = opts.maxAttempts;
    this.nc = opts.nc;
    this.slots = opts.slots;
    this.sweepMs = opts.sweepMs;
    this.turns = opts.turns;
  }

  start(): void {
    this.sub = this.nc.subscribe(`$KV.${KV_BUCKETS.approvals}.approval.>`, {
      callback: (_err, msg) => {
        if (msg.data.length === 0) return;
        let a: Approval;
        try {
          a = Approval.decode(msg.data);
        } catch {
          return;
        }
        if (a.requestedBy !== 'orchestrator' || a.kind !== ApprovalKind.APPROVAL_KIND_TOOL_CALL || !a.inboundId) return;
        if (!isSettled(a, Date.now())) return;
        this.poke(turnKey(a.inboundId));
      },
    });
    void this.sweep();
    this.timer = setInterval(() => void this.sweep(), this.sweepMs);
    this.timer.unref();
  }

  /** Stops taking up turns; continuations already running finish (main waits on inFlight). */
  stop(): void {
    this.stopped = true;
    this.sub?.unsubscribe();
    if (this.timer) clearInterval(this.timer);
  }

  /** Looks at one turn soon (a decision arrived, or its inbound message was delivered again). */
  poke(key: string): void {
    if (this.stopped || this.done.has(key)) return;
    if (this.active.has(key)) {
      this.again.add(key);
      return;
    }
    void this.check(key);
  }

  /** Looks at every stored turn once; concurrent calls share one sweep. */
  sweep(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.sweeping ??= (async () => {
      this.counters.sweeps += 1;
      try {
        for (const key of await this.turns.keys()) if (!this.done.has(key)) this.poke(key);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'could not list parked turns; will try again');
      }
    })().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async check(key: string): Promise<void> {
    this.active.add(key);
    try {
      await this.checkOnce(key);
    } catch (err) {
      this.log.warn({ turn: key, err: (err as Error).message }, 'could not continue a parked turn; will try again');
    } finally {
      this.active.delete(key);
      if (this.again.delete(key)) this.poke(key);
    }
  }

  private async checkOnce(key: string): Promise<void> {
    const s = await this.turns.getKey(key);
    if (!s || this.stopped) return;
    const t = s.turn;
    const now = Date.now();
    const status = storedStatus(t);
    let approval: ParkedFacts['approval'];
    if (status === 'parked') {
      const a = await this.approvals.settle(t.approvalId, now);
      approval = !a ? 'missing' : isSettled(a, now) ? 'settled' : 'pending';
    }
    switch (recoverParked({ status, leaseLive: t.leaseUntilMs > now, ...(approval ? { approval } : {}) })) {
      case 'skip':
        if (status === 'done') this.done.add(key);
        return;
      case 'write_approval':
        // Parked but the approval was never written (crash in between): ask now.
        if (t.approval) await this.approvals.create(t.approval);
        return;
      case 'wait':
        return;
      case 'claim':
        break;
    }
    await this.slots.acquire();
    try {
      if (this.stopped) return;
      const fresh = await this.turns.getKey(key);
      if (!fresh || fresh.revision !== s.revision) {
        this.again.add(key);
        return;
      }
      const claim = new Claim(this.turns, fresh, this.owner, this.leaseMs);
      if (!(await claim.take())) return;
      this.counters.claims += 1;
      try {
        await this.inFlight.track(() => this.run(claim));
      } finally {
        claim.stop();
      }
    } finally {
      this.slots.release();
    }
  }

  /** Moves a claimed turn through its phases (turn-machine.ts): claimed → … → done, parked again, or released. */
  private async run(claim: Claim): Promise<void> {
    const t = claim.turn;
    const log = this.log;
    // A resumed turn's computation ends like a fresh one's: counted in talon_turns_total by its outcome.
    const run = new TurnRun('parked', (from, event, to) => {
      countTurnStep(from, event);
      log.debug({ inbound_id: t.inboundId, from, event, to }, 'turn phase');
    });
    run.step('claimed');
    let inbound: InboundMessage;
    try {
      inbound = InboundMessage.decode(t.inbound);
      if (!replyDelivery(inbound.reply?.subject ?? '')) throw new Error('no reply route');
    } catch (err) {
      log.error({ inbound_id: t.inboundId, err: (err as Error).message }, 'parked turn is unreadable; dropping it');
      run.step('undeliverable');
      await claim.write(doneRecord(t, Date.now()));
      return;
    }
    // A retried continuation streams under a new attempt number, so the gateway never splices two attempts.
    const attempt = t.attempt + Math.max(0, t.claims - 1);
    const next = afterClaim({ replyStored: t.reply.length > 0, delivered: t.delivered, claims: t.claims, maxAttempts: this.maxAttempts });
    run.step(next);
    // reply_found / record_pending: the answer was obtained before a crash or a memory outage: publish or record that one, never a second.
    if (next === 'continue' || next === 'give_up') {
      const answer = next === 'give_up' ? this.giveUp(t, inbound, attempt) : await this.compute(claim, run, inbound, attempt);
      if (!answer) return;
      const reply = this.engine.outbound(inbound, answer.body);
      // Stored before it goes out (the loop's progress is not needed any more).
      const stored = {
        ...claim.turn,
        progress: undefined,
        reply: Buffer.from(OutboundMessage.encode(reply).finish()),
        records: answer.records,
      };
      if (!(await claim.write(stored))) return;
      run.step('reply_stored');
    }
    const result = await deliverAndRecord({ engine: this.engine, log }, claim, inbound, run, { tries: 2, baseDelayMs: 250 });
    if (result !== 'recorded') {
      if (result !== 'lost') run.step('released');
      return;
    }
    await claim.write(doneRecord(claim.turn, Date.now()));
    run.step('done');
    log.info({ inbound_id: t.inboundId, parks: t.parks, claims: t.claims }, 'stored turn answered and recorded');
  }

  /** Claimed again and again without an answer (e.g. the process dies each time): an error reply. */
  private giveUp(t: ParkedTurn, inbound: InboundMessage, attempt: number): Answer {
    this.log.error({ inbound_id: t.inboundId, claims: t.claims }, 'parked turn keeps failing; answering with an error');
    const message = 'the turn could not be completed after the approval; please ask again';
    return { body: this.engine.errorBody('internal', message, attempt), records: this.engine.failedRecords(inbound, 'internal', message) };
  }

  /** The answer of a claimed turn: its continuation, or an error; undefined when it parked again, was lost or will be retried. */
  private async compute(claim: Claim, run: TurnRun, inbound: InboundMessage, attempt: number): Promise<Answer | undefined> {
    const t = claim.turn;
    const log = this.log;
    try {
      const out = await withSpan(
        'orchestrator.turn.resume',
        { kind: SpanKind.INTERNAL, attributes: { 'talon.inbound_id': t.inboundId, 'talon.claims': t.claims, 'talon.parks': t.parks } },
        () =>
          this.engine.continue({
            inbound,
            attempt,
            progress: progressFromProto(t.progress),
            streamSeq: t.streamSeq,
            parks: t.parks,
            createdAtMs: t.createdAtMs,
            write: (next) => claim.write(next),
          }),
      );
      if (out.kind !== 'reply') {
        run.step(out.kind);
        return undefined;
      }
      run.step('answered');
      this.counters.resumed += 1;
      return { body: out.body, records: out.records };
    } catch (err) {
      if (claim.lost) {
        run.step('superseded');
        return undefined;
      }
      const action = onFailure(err, t.claims, this.maxAttempts);
      if (action.kind === 'retry') {
        log.warn(
          { inbound_id: t.inboundId, attempt: t.claims, err: (err as Error).message, retry_in_ms: action.delayMs },
          'continuing a parked turn failed; will retry',
        );
        // Released: any replica's sweep takes it up once this short lease has passed.
        await claim.write({ ...claim.turn, owner: '', leaseUntilMs: Date.now() + action.delayMs });
        run.step('released');
        return undefined;
      }
      log.warn({ inbound_id: t.inboundId, code: action.code, err: (err as Error).message }, 'parked turn failed');
      run.step('failed');
      return {
        body: this.engine.errorBody(action.code, action.message, attempt),
        records: this.engine.failedRecords(inbound, action.code, action.message),
      };
    }
  }
}
