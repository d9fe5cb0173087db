// Consumes TALON_INBOUND durably and runs one turn per message.
// A message is acknowledged only after its reply is out — stored in JetStream for a
// channel, handed to the gateway replica over core NATS for the API (see
// TurnEngine.publish) — and recorded, or handed to talon_turns to be recorded: so a
// crash at any point means redelivery, within about the ack wait (short; heartbeats
// keep a long turn's message). The answer is stored in talon_turns before it goes out,
// so a redelivery publishes (de-duplicated by its route) or records that answer and
// never asks the model again. A turn that parks (a tool call waits for the user's
// approval) is acknowledged once it is stored in talon_turns: from then on the resumer
// owns it, and a redelivered copy of its message is recognised and not run again.
import {
  jetstreamManager,
  AckPolicy,
  DeliverPolicy,
  jetstream,
  type JsMsg,
  type Consumer,
  type ConsumerInfo,
  type ConsumerMessages,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { CONSUMERS, STREAMS, isStreamSubject, replyDelivery } from '@talon/kit/subjects';
import { SpanKind, extractHeaders, withSpan } from '@talon/kit/telemetry';
import { InFlight } from '@talon/kit/lifecycle';
import type { Logger } from '@talon/kit/log';
import { isConsumerNotFound, type NatsConnection } from '@talon/kit/nats';
import { InboundMessage, type Turn } from '@talon/proto';
import { deliverAndRecord } from './deliver.ts';
import { countTurnStep, turnDuration } from './metrics.ts';
import { PendingRecords } from './pending-records.ts';
import { Claim } from './resume.ts';
import { Slots } from './slots.ts';
import type { ReplyBody, TurnEngine, TurnOutcome } from './turn-engine.ts';
import { answeredTurn, doneRecord, storedStatus, turnKey, type StoredTurn, type TurnStore } from './turn-state.ts';
import { TurnRun, mustLookForParked, recoverInbound, recoveryEvent, type InboundRecovery, type StepListener } from './turn-machine.ts';
import { onFailure } from './turn.ts';

export interface WorkerOptions {
  nc: NatsConnection;
  log: Logger;
  engine: Pick<TurnEngine, 'start' | 'outbound' | 'publish' | 'errorBody' | 'record' | 'failedRecords'> &
    Partial<Pick<TurnEngine, 'route'>>;
  /** Stored turns: parked ones (a message whose turn is stored there was handled already) and obtained answers. */
  turns: Pick<TurnStore, 'get' | 'create' | 'update'>;
  /** Told when a message of a parked turn arrives again (the resumer looks at the turn). */
  onParkedAgain?: (key: string) => void;
  /** This replica's id on the turns it stores (shared with the resumer). */
  owner: string;
  /** How long a stored answer is this execution's before the resumer's sweep may take it. */
  leaseMs: number;
  ackWaitMs: number;
  maxDeliver: number;
  concurrency: number;
  /** Shared with the resumer; default: a pool of `concurrency`. */
  slots?: Slots;
  inFlight?: InFlight;
}

export class InboundWorker {
  private readonly ackWaitMs: WorkerOptions['ackWaitMs'];
  private readonly concurrency: WorkerOptions['concurrency'];
  private readonly engine: WorkerOptions['engine'];
  private readonly log: WorkerOptions['log'];
  private readonly maxDeliver: WorkerOptions['maxDeliver'];
  private readonly nc: WorkerOptions['nc'];
  private readonly onParkedAgain: WorkerOptions['onParkedAgain'];
  private readonly turns: WorkerOptions['turns'];
  private readonly owner: WorkerOptions['owner'];
  private readonly leaseMs: WorkerOptions['leaseMs'];
  private readonly js;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  readonly inFlight: InFlight;
  private readonly slots: Slots;
  /** Answers still being written to memory, per conversation (see pending-records.ts). */
  private readonly records = new PendingRecords();

  constructor(opts: WorkerOptions) {
    this.ackWaitMs = opts.ackWaitMs;
    this.concurrency = opts.concurrency;
    this.engine = opts.engine;
    this.log = opts.log;
    this.maxDeliver = opts.maxDeliver;
    this.nc = opts.nc;
    this.onParkedAgain = opts.onParkedAgain;
    this.turns = opts.turns;
    this.owner = opts.owner;
    this.leaseMs = opts.leaseMs;
    this.js = jetstream(opts.nc);
    this.slots = opts.slots ?? new Slots(opts.concurrency);
    this.inFlight = opts.inFlight ?? new InFlight();
  }

  /** The durable consumer's state (backlog gauges read it at scrape). */
  async consumerInfo(): Promise<ConsumerInfo> {
    return (await jetstreamManager(this.nc, { checkAPI: false })).consumers.info(STREAMS.inbound.name, CONSUMERS.orchestratorInbound);
  }

  /** Creates or updates the durable consumer this worker pulls from. */
  async ensureConsumer(): Promise<Consumer> {
    const jsm = await jetstreamManager(this.nc);
    const cfg = {
      durable_name: CONSUMERS.orchestratorInbound,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.ackWaitMs),
      max_deliver: this.maxDeliver + 1,
      max_ack_pending: Math.max(64, this.concurrency * 4),
    };
    try {
      const info = await jsm.consumers.info(STREAMS.inbound.name, CONSUMERS.orchestratorInbound);
      if (
        info.config.ack_wait !== cfg.ack_wait ||
        info.config.max_deliver !== cfg.max_deliver ||
        info.config.max_ack_pending !== cfg.max_ack_pending
      ) {
        await jsm.consumers.update(STREAMS.inbound.name, CONSUMERS.orchestratorInbound, {
          ack_wait: cfg.ack_wait,
          max_deliver: cfg.max_deliver,
          max_ack_pending: cfg.max_ack_pending,
        });
      }
    } catch (err) {
      if (!isConsumerNotFound(err)) throw err;
      await jsm.consumers.add(STREAMS.inbound.name, cfg);
    }
    return this.js.consumers.get(STREAMS.inbound.name, CONSUMERS.orchestratorInbound);
  }

  async start(): Promise<void> {
    const consumer = await this.ensureConsumer();
    this.messages = await consumer.consume({ max_messages: this.concurrency });
    this.loop = (async () => {
      for await (const m of this.messages!) {
        await this.slots.acquire();
        void this.inFlight.track(() => this.handle(m)).finally(() => this.slots.release());
      }
    })();
  }

  /** Stops pulling new messages; in-flight turns keep running. */
  async stopIntake(): Promise<void> {
    await this.messages?.close();
    await this.loop?.catch(() => undefined);
  }

  private async handle(m: JsMsg): Promise<void> {
    const timer = turnDuration.startTimer();
    const run = new TurnRun('received', this.onStep);
    let inbound: InboundMessage;
    try {
      inbound = InboundMessage.decode(m.data);
    } catch {
      this.log.error({ seq: m.seq }, 'undecodable inbound message; terminating it');
      run.step('undeliverable');
      m.term('undecodable');
      return;
    }
    const attempt = m.info.deliveryCount;
    const reply = inbound.reply;
    if (!reply || !replyDelivery(reply.subject) || (reply.streamSubject !== '' && !isStreamSubject(reply.streamSubject))) {
      this.log.error({ inbound_id: inbound.id }, 'inbound message has no valid reply route; terminating it');
      run.step('undeliverable');
      m.term('bad reply route');
      return;
    }
    // Keep the message ours while the turn runs (LLM calls can outlast ack_wait).
    const heartbeat = setInterval(() => m.working(), Math.max(250, Math.floor(this.ackWaitMs / 3)));
    const parent = extractHeaders(m.headers);
    try {
      // The agent that answers (talon agents), chosen once: everything below sees its inbound message.
      if (this.engine.route) inbound = await this.engine.route(inbound);
      await withSpan(
        'orchestrator.turn',
        { kind: SpanKind.CONSUMER, parent, attributes: { 'talon.inbound_id': inbound.id, 'talon.attempt': attempt } },
        async (span) => {
          try {
            await this.drive(run, m, inbound, attempt);
          } finally {
            span.setAttribute('talon.turn.phase', run.phase);
          }
        },
      );
    } catch (err) {
      // Publishing the reply or the ack failed (NATS trouble): let JetStream redeliver.
      this.log.error(
        { inbound_id: inbound.id, phase: run.phase, err: (err as Error).message },
        'could not complete turn; leaving it for redelivery',
      );
    } finally {
      clearInterval(heartbeat);
      timer({});
    }
  }

  /** Moves one delivery through the turn's phases (turn-machine.ts): received → … → acked, parked or retry. */
  private async drive(run: TurnRun, m: JsMsg, inbound: InboundMessage, attempt: number): Promise<void> {
    const out = await this.compute(run, inbound, attempt);
    if (out.kind === 'already_parked') {
      this.log.info({ inbound_id: inbound.id, attempt }, 'turn is parked already; acknowledging the redelivered message');
      this.onParkedAgain?.(turnKey(inbound.id));
      await m.ackAck();
      return;
    }
    if (out.kind === 'retry') {
      m.nak(out.delayMs);
      return;
    }
    if (out.kind === 'parked' || out.kind === 'superseded') {
      await m.ackAck();
      run.step('acked');
      return;
    }
    let claim: Claim;
    if (out.kind === 'stored') {
      claim = out.claim;
    } else {
      const stored = await this.storeAnswer(inbound, out.body, out.records, attempt);
      if (!stored) {
        // Another execution of this message stored its answer first: it (or the sweep) finishes the turn.
        this.log.info({ inbound_id: inbound.id, attempt }, 'another execution stored an answer for this turn first; leaving it that one');
        run.step('superseded');
        this.onParkedAgain?.(turnKey(inbound.id));
        await m.ackAck();
        run.step('acked');
        return;
      }
      run.step('reply_stored');
      claim = stored;
    }
    claim.keepAlive();
    try {
      await this.finish(run, m, inbound, claim);
    } finally {
      claim.stop();
    }
  }

  /** Stores the obtained answer (reply and turns to record) in talon_turns before anything of it goes out; undefined when a record exists. */
  private async storeAnswer(inbound: InboundMessage, body: ReplyBody, records: Turn[], attempt: number): Promise<Claim | undefined> {
    const now = Date.now();
    const turn = answeredTurn({
      inbound,
      reply: this.engine.outbound(inbound, body),
      records,
      attempt,
      owner: this.owner,
      leaseMs: this.leaseMs,
      now,
    });
    const revision = await this.turns.create(turn);
    if (revision === undefined) return undefined;
    return new Claim(this.turns, { key: turnKey(inbound.id), turn, revision }, this.owner, this.leaseMs);
  }

  /** stored/replied → recorded → acked (then DONE), or deferred → acked: the stored turn carries the record on. */
  private async finish(run: TurnRun, m: JsMsg, inbound: InboundMessage, claim: Claim): Promise<void> {
    // Held before the reply goes out: the user's next message can arrive before publish() returns.
    const hold = claim.turn.records.length > 0 ? this.records.hold(inbound.conversation) : undefined;
    let result;
    try {
      result = await deliverAndRecord({ engine: this.engine, log: this.log }, claim, inbound, run, { tries: 4, baseDelayMs: 250 });
    } finally {
      hold?.release();
    }
    if (result === 'lost') {
      // Another execution took the stored turn over (this one was too slow): it acknowledges the message.
      this.log.warn({ inbound_id: inbound.id }, 'the stored turn was taken over by another execution; leaving the message to it');
      return;
    }
    await m.ackAck();
    run.step('acked');
    // After the ack: a crash before this write leaves a stored answer the sweep records again (idempotent).
    if (result === 'recorded') {
      await claim.write(doneRecord(claim.turn, Date.now())).catch((err: unknown) => {
        this.log.warn({ inbound_id: inbound.id, err: (err as Error).message }, 'could not mark the turn done; the sweep will');
      });
    }
  }

  /** What a redelivery finds (turn-machine.ts recoverInbound): a parked turn is the resumer's; a stored answer is finished, not recomputed. */
  private async recover(inbound: InboundMessage, attempt: number): Promise<{ recovery: InboundRecovery; stored?: StoredTurn }> {
    const stored = mustLookForParked(attempt) ? await this.turns.get(inbound.id) : undefined;
    const recovery = recoverInbound({ delivery: attempt, ...(stored ? { stored: storedStatus(stored.turn) } : {}) });
    return stored ? { recovery, stored } : { recovery };
  }

  /**
   * The turn's outcome, an error reply when it failed for good, a retry (nak) after a
   * transient failure, `already_parked` (the resumer's), or `stored`: the answer an
   * earlier execution obtained, taken over by compare-and-set.
   */
  private async compute(
    run: TurnRun,
    inbound: InboundMessage,
    attempt: number,
  ): Promise<TurnOutcome | { kind: 'retry'; delayMs: number } | { kind: 'already_parked' } | { kind: 'stored'; claim: Claim }> {
    let out: TurnOutcome;
    try {
      const { recovery, stored } = await this.recover(inbound, attempt);
      if (recovery === 'ack_parked') {
        run.step('already_parked');
        return { kind: 'already_parked' };
      }
      if (stored && (recovery === 'publish_stored' || recovery === 'record_stored')) {
        // This delivery is the turn's now (the earlier one's ack wait ran out): take the stored answer over.
        const claim = new Claim(this.turns, stored, this.owner, this.leaseMs);
        if (!(await claim.take())) return { kind: 'retry', delayMs: 1000 };
        this.log.info(
          { inbound_id: inbound.id, attempt, recovery },
          'redelivered turn has its answer stored; finishing it without the model',
        );
        run.step(recoveryEvent(recovery));
        return { kind: 'stored', claim };
      }
      run.step('begin');
      // The previous answer of this conversation is in its history before this turn reads it.
      await this.records.settled(inbound.conversation);
      out = await this.engine.start(inbound, attempt, run);
    } catch (err) {
      // A parked-turn store that could not be read fails or retries like any other start.
      if (run.phase === 'received') run.step('begin');
      const action = onFailure(err, attempt, this.maxDeliver);
      if (action.kind === 'retry') {
        this.log.warn(
          { inbound_id: inbound.id, attempt, phase: run.phase, err: (err as Error).message, retry_in_ms: action.delayMs },
          'turn failed; will retry',
        );
        run.step('retry');
        return { kind: 'retry', delayMs: action.delayMs };
      }
      this.log.warn({ inbound_id: inbound.id, attempt, code: action.code, err: (err as Error).message }, 'turn failed');
      // Once the user turn is stored (the loop ran), memory also keeps that this turn failed.
      const records = run.phase === 'looping' ? this.engine.failedRecords(inbound, action.code, action.message) : [];
      run.step('failed');
      return { kind: 'reply', body: this.engine.errorBody(action.code, action.message, attempt), records };
    }
    run.step(out.kind === 'reply' ? 'answered' : out.kind);
    return out;
  }

  private readonly onStep: StepListener = (from, event, to) => {
    countTurnStep(from, event);
    this.log.debug({ from, event, to }, 'turn phase');
  };
}
