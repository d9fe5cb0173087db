// Consumes TALON_INBOUND durably and runs one turn per message.
// A message is acknowledged only after its reply is stored in JetStream, so a
// crash at any point means redelivery; the reply's Nats-Msg-Id makes a second
// publication of the same reply a no-op (answered exactly once).
import {
  jetstream,
  jetstreamManager,
  AckPolicy,
  DeliverPolicy,
  type JsMsg,
  type Consumer,
  type ConsumerMessages,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import {
  CONSUMERS,
  STREAMS,
  SpanKind,
  extractHeaders,
  InFlight,
  tracedHeaders,
  withSpan,
  type Logger,
  type NatsConnection,
} from '@talon/kit';
import { InboundMessage, OutboundMessage, Role, StreamChunk } from '@talon/proto';
import type { LlmClient } from './llm/client.ts';
import type { MemoryApi } from './memory.ts';
import { buildMessages, newUserMessage, onFailure } from './turn.ts';

type ReplyBody = Omit<OutboundMessage, 'inboundId' | 'conversation' | 'requestId' | 'createdAtMs'>;

export interface WorkerOptions {
  nc: NatsConnection;
  log: Logger;
  llm: LlmClient;
  memory: MemoryApi;
  systemPrompt: string;
  ackWaitMs: number;
  maxDeliver: number;
  concurrency: number;
  historyTurns: number;
  recordTurns: boolean;
}

export class InboundWorker {
  private readonly o: WorkerOptions;
  private readonly js;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  readonly inFlight = new InFlight();
  private slots: number;
  private slotWaiters: Array<() => void> = [];

  constructor(opts: WorkerOptions) {
    this.o = opts;
    this.js = jetstream(opts.nc);
    this.slots = opts.concurrency;
  }

  /** Creates or updates the durable consumer this worker pulls from. */
  async ensureConsumer(): Promise<Consumer> {
    const jsm = await jetstreamManager(this.o.nc);
    const cfg = {
      durable_name: CONSUMERS.orchestratorInbound,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.o.ackWaitMs),
      max_deliver: this.o.maxDeliver + 1,
      max_ack_pending: Math.max(64, this.o.concurrency * 4),
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
      if (!/consumer not found/i.test(String((err as Error).message))) throw err;
      await jsm.consumers.add(STREAMS.inbound.name, cfg);
    }
    return this.js.consumers.get(STREAMS.inbound.name, CONSUMERS.orchestratorInbound);
  }

  async start(): Promise<void> {
    const consumer = await this.ensureConsumer();
    this.messages = await consumer.consume({ max_messages: this.o.concurrency });
    this.loop = (async () => {
      for await (const m of this.messages!) {
        await this.acquire();
        void this.inFlight.track(() => this.handle(m)).finally(() => this.release());
      }
    })();
  }

  /** Stops pulling new messages; in-flight turns keep running. */
  async stopIntake(): Promise<void> {
    await this.messages?.close();
    await this.loop?.catch(() => undefined);
  }

  private acquire(): Promise<void> {
    if (this.slots > 0) {
      this.slots -= 1;
      return Promise.resolve();
    }
    return new Promise((r) => this.slotWaiters.push(r));
  }

  private release(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.slots += 1;
  }

  private async handle(m: JsMsg): Promise<void> {
    let inbound: InboundMessage;
    try {
      inbound = InboundMessage.decode(m.data);
    } catch {
      this.o.log.error({ seq: m.seq }, 'undecodable inbound message; terminating it');
      m.term('undecodable');
      return;
    }
    const attempt = m.info.deliveryCount;
    const reply = inbound.reply;
    if (!reply?.subject.startsWith('talon.outbound.') || (reply.streamSubject !== '' && !reply.streamSubject.startsWith('talon.stream.'))) {
      this.o.log.error({ inbound_id: inbound.id }, 'inbound message has no valid reply route; terminating it');
      m.term('bad reply route');
      return;
    }
    // Keep the message ours while the turn runs (LLM calls can outlast ack_wait).
    const heartbeat = setInterval(() => m.working(), Math.max(250, Math.floor(this.o.ackWaitMs / 3)));
    const parent = extractHeaders(m.headers);
    try {
      await withSpan(
        'orchestrator.turn',
        { kind: SpanKind.CONSUMER, parent, attributes: { 'talon.inbound_id': inbound.id, 'talon.attempt': attempt } },
        async () => {
          let out: ReplyBody;
          try {
            out = await this.runTurn(inbound, attempt);
          } catch (err) {
            const action = onFailure(err, attempt, this.o.maxDeliver);
            if (action.kind === 'retry') {
              this.o.log.warn(
                { inbound_id: inbound.id, attempt, err: (err as Error).message, retry_in_ms: action.delayMs },
                'turn failed; will retry',
              );
              m.nak(action.delayMs);
              return;
            }
            this.o.log.warn({ inbound_id: inbound.id, attempt, code: action.code, err: (err as Error).message }, 'turn failed');
            out = {
              content: '',
              model: this.o.llm.model,
              finishReason: 'error',
              usage: undefined,
              error: { code: action.code, message: action.message },
              attempt,
            };
          }
          await this.publishReply(inbound, out);
          await m.ackAck();
        },
      );
    } catch (err) {
      // Publishing the reply or the ack failed (NATS trouble): let JetStream redeliver.
      this.o.log.error({ inbound_id: inbound.id, err: (err as Error).message }, 'could not complete turn; leaving it for redelivery');
    } finally {
      clearInterval(heartbeat);
    }
  }

  private async runTurn(inbound: InboundMessage, attempt: number): Promise<ReplyBody> {
    const conv = inbound.conversation;
    const userMsg = newUserMessage(inbound);
    const history =
      conv && this.o.historyTurns > 0 && inbound.messages.filter((x) => x.role !== Role.ROLE_SYSTEM).length <= 1
        ? await this.o.memory.history(conv, this.o.historyTurns)
        : [];
    if (this.o.recordTurns && conv && userMsg) {
      await this.o.memory.append(conv, [
        { id: `${inbound.id}:user`, role: 'user', source: 'user', content: userMsg.content, createdAtMs: inbound.receivedAtMs },
      ]);
    }
    const messages = buildMessages(this.o.systemPrompt, inbound.messages, history);
    let seq = 0;
    const streamSubject = inbound.stream ? (inbound.reply?.streamSubject ?? '') : '';
    const onDelta = streamSubject
      ? (delta: string) => {
          seq += 1;
          this.o.nc.publish(streamSubject, StreamChunk.encode({ requestId: inbound.reply?.requestId ?? '', seq, delta, attempt }).finish());
        }
      : undefined;
    const result = await withSpan(
      'llm.call',
      { kind: SpanKind.CLIENT, attributes: { 'gen_ai.request.model': this.o.llm.model, 'talon.stream': inbound.stream } },
      () =>
        this.o.llm.complete(
          {
            messages,
            stream: inbound.stream,
            ...(inbound.temperature !== undefined ? { temperature: inbound.temperature } : {}),
            ...(inbound.maxTokens !== undefined ? { maxTokens: inbound.maxTokens } : {}),
          },
          onDelta,
        ),
    );
    if (this.o.recordTurns && conv) {
      await this.o.memory.append(conv, [
        { id: `${inbound.id}:assistant`, role: 'assistant', source: 'assistant', content: result.content, createdAtMs: Date.now() },
      ]);
    }
    return {
      content: result.content,
      model: result.model,
      finishReason: result.finishReason,
      usage: result.usage,
      error: undefined,
      attempt,
    };
  }

  private async publishReply(inbound: InboundMessage, out: ReplyBody): Promise<void> {
    const msg: OutboundMessage = {
      ...out,
      inboundId: inbound.id,
      conversation: inbound.conversation,
      requestId: inbound.reply?.requestId ?? '',
      createdAtMs: Date.now(),
    };
    await this.js.publish(inbound.reply!.subject, OutboundMessage.encode(msg).finish(), {
      msgID: `reply:${inbound.id}`,
      headers: tracedHeaders(),
      timeout: 5000,
    });
  }
}
