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
import { runToolLoop, type ToolLoopLimits } from './agent-loop.ts';
import { assembleContext } from './context.ts';
import type { LlmClient } from './llm/client.ts';
import type { MemoryApi } from './memory.ts';
import type { Recall } from './recall.ts';
import { ToolRegistry } from './tools/registry.ts';
import { newUserMessage, onFailure } from './turn.ts';

type ReplyBody = Omit<OutboundMessage, 'inboundId' | 'conversation' | 'requestId' | 'createdAtMs'>;

const EMPTY_TOOLS = new ToolRegistry();

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
  /** Recall of the user's memories from their other conversations. */
  recall: Recall;
  recallLimit: number;
  contextBudgetTokens: number;
  recallBudgetTokens: number;
  tools: ToolRegistry;
  toolLimits: ToolLoopLimits;
  /** Called after this turn wrote memory rows that need a (remote) embedding. */
  onMemoryWritten?: () => void;
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
    const wantHistory = conv && this.o.historyTurns > 0 && inbound.messages.filter((x) => x.role !== Role.ROLE_SYSTEM).length <= 1;
    const wantRecall = conv && userMsg && this.o.recallLimit > 0 && this.o.recallBudgetTokens > 0;
    const [history, memories] = await Promise.all([
      wantHistory ? this.o.memory.history(conv, this.o.historyTurns) : Promise.resolve([]),
      // Recall is an aid, not a requirement: if it fails the turn goes on without it.
      wantRecall
        ? withSpan('memory.recall', { kind: SpanKind.CLIENT }, () =>
            this.o.recall.search(conv.userId, userMsg.content, { limit: this.o.recallLimit, exclude: conv }),
          ).catch((err: unknown) => {
            this.o.log.warn({ inbound_id: inbound.id, err: (err as Error).message }, 'memory recall failed; answering without it');
            return [];
          })
        : Promise.resolve([]),
    ]);
    if (this.o.recordTurns && conv && userMsg) {
      await this.o.memory.append(conv, [
        { id: `${inbound.id}:user`, role: 'user', source: 'user', content: userMsg.content, createdAtMs: inbound.receivedAtMs },
      ]);
      this.o.onMemoryWritten?.();
    }
    const ctx = assembleContext({
      systemPrompt: this.o.systemPrompt,
      inbound: inbound.messages,
      stored: history,
      memories,
      budgetTokens: this.o.contextBudgetTokens,
      recallBudgetTokens: this.o.recallBudgetTokens,
    });
    let seq = 0;
    const streamSubject = inbound.stream ? (inbound.reply?.streamSubject ?? '') : '';
    const onDelta = streamSubject
      ? (delta: string) => {
          seq += 1;
          this.o.nc.publish(streamSubject, StreamChunk.encode({ requestId: inbound.reply?.requestId ?? '', seq, delta, attempt }).finish());
        }
      : undefined;
    // Without a conversation there is no user to act for: no tools.
    const tools = conv ? this.o.tools : undefined;
    const result = await withSpan(
      'llm.call',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'gen_ai.request.model': this.o.llm.model,
          'talon.stream': inbound.stream,
          'talon.memories_recalled': ctx.memoriesUsed,
          'talon.context_tokens_estimate': ctx.estimatedTokens,
        },
      },
      () =>
        runToolLoop({
          llm: this.o.llm,
          tools: tools ?? EMPTY_TOOLS,
          messages: ctx.messages,
          context: { conversation: conv ?? { userId: '', channel: '', threadId: '' }, inboundId: inbound.id },
          limits: this.o.toolLimits,
          stream: inbound.stream,
          ...(inbound.temperature !== undefined ? { temperature: inbound.temperature } : {}),
          ...(inbound.maxTokens !== undefined ? { maxTokens: inbound.maxTokens } : {}),
          ...(onDelta ? { onDelta } : {}),
          onToolCall: (t) => this.o.log.info({ inbound_id: inbound.id, tool: t.name, ok: t.ok, ms: t.ms, step: t.step }, 'tool call'),
        }),
    );
    if (result.toolCallsRun > 0) this.o.onMemoryWritten?.();
    if (this.o.recordTurns && conv) {
      await this.o.memory.append(conv, [
        { id: `${inbound.id}:assistant`, role: 'assistant', source: 'assistant', content: result.content, createdAtMs: Date.now() },
      ]);
      this.o.onMemoryWritten?.();
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
