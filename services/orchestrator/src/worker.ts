// Consumes TALON_INBOUND durably and runs one turn per message.
// A message is acknowledged only after its reply is out — stored in JetStream for a
// channel, handed to the gateway replica over core NATS for the API (see
// TurnEngine.publish) — so a crash at any point means redelivery; a channel reply's
// Nats-Msg-Id makes a second publication of it a no-op, and the gateway ignores a
// second API reply to a request it answered. A turn that
// parks (a tool call waits for the user's approval) is acknowledged once it is
// stored in talon_turns: from then on the resumer owns it, and a redelivered copy
// of its message is recognised and not run again.
import {
  jetstreamManager,
  AckPolicy,
  DeliverPolicy,
  jetstream,
  type JsMsg,
  type Consumer,
  type ConsumerMessages,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { CONSUMERS, STREAMS, isStreamSubject, replyDelivery } from '@talon/kit/subjects';
import { SpanKind, extractHeaders, withSpan } from '@talon/kit/telemetry';
import { InFlight } from '@talon/kit/lifecycle';
import type { Logger } from '@talon/kit/log';
import { isConsumerNotFound, type NatsConnection } from '@talon/kit/nats';
import { InboundMessage } from '@talon/proto';
import { PendingRecords, withRetries } from './pending-records.ts';
import { Slots } from './slots.ts';
import type { ReplyBody, TurnEngine, TurnOutcome } from './turn-engine.ts';
import { parkedStatus, turnKey, type TurnStore } from './turn-state.ts';
import { TurnRun, mustLookForParked, recoverInbound, type InboundRecovery, type StepListener } from './turn-machine.ts';
import { onFailure } from './turn.ts';

export interface WorkerOptions {
  nc: NatsConnection;
  log: Logger;
  engine: Pick<TurnEngine, 'start' | 'outbound' | 'publish' | 'errorBody'>;
  /** Parked turns: a message whose turn is stored there was handled already. */
  turns?: Pick<TurnStore, 'get'>;
  /** Told when a message of a parked turn arrives again (the resumer looks at the turn). */
  onParkedAgain?: (key: string) => void;
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
    this.js = jetstream(opts.nc);
    this.slots = opts.slots ?? new Slots(opts.concurrency);
    this.inFlight = opts.inFlight ?? new InFlight();
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
    if (out.kind !== 'reply') {
      await m.ackAck();
      run.step('acked');
      return;
    }
    const record = out.afterReply;
    // Held before the reply goes out: the user's next message can arrive before publish() returns.
    const hold = record ? this.records.hold(inbound.conversation) : undefined;
    try {
      await this.publishReply(inbound, out.body);
      run.step('published');
      if (record) {
        try {
          // Idempotent by turn id: a brief memory outage is retried here rather than by
          // running the turn again (which would record an answer the user never saw).
          await withRetries(record, 4, 250);
        } catch (err) {
          // The answer is out (and de-duplicated if sent again); redeliver so the record is written.
          this.log.warn({ inbound_id: inbound.id, err: (err as Error).message }, 'recording the answer in memory failed; will retry');
          run.step('record_failed');
          m.nak(1000);
          return;
        }
      }
      run.step('recorded');
    } finally {
      hold?.release();
    }
    await m.ackAck();
    run.step('acked');
  }

  /** What a redelivery finds (turn-machine.ts recoverInbound): a turn parked before the crash is the resumer's. */
  private async recover(inbound: InboundMessage, attempt: number): Promise<InboundRecovery> {
    const stored = mustLookForParked(attempt) && this.turns ? await this.turns.get(inbound.id) : undefined;
    return recoverInbound({ delivery: attempt, ...(stored ? { stored: parkedStatus(stored.turn.status) } : {}) });
  }

  /** The turn's outcome, an error reply when it failed for good, a retry (nak) after a transient failure, or `already_parked` (the resumer's). */
  private async compute(
    run: TurnRun,
    inbound: InboundMessage,
    attempt: number,
  ): Promise<TurnOutcome | { kind: 'retry'; delayMs: number } | { kind: 'already_parked' }> {
    let out: TurnOutcome;
    try {
      if ((await this.recover(inbound, attempt)) === 'ack_parked') {
        run.step('already_parked');
        return { kind: 'already_parked' };
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
      run.step('failed');
      return { kind: 'reply', body: this.engine.errorBody(action.code, action.message, attempt) };
    }
    run.step(out.kind === 'reply' ? 'answered' : out.kind);
    return out;
  }

  private readonly onStep: StepListener = (from, event, to) => this.log.debug({ from, event, to }, 'turn phase');

  private async publishReply(inbound: InboundMessage, body: ReplyBody): Promise<void> {
    await this.engine.publish(inbound, this.engine.outbound(inbound, body));
  }
}
