// One chat turn for a connected client (HTTP API or WebSocket): redact any
// credential from the messages (egress's scanner), publish the inbound message to
// JetStream, then wait on this replica's reply route for the orchestrator's
// answer, relaying stream chunks as they come.
import { randomUUID } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import { SUBJECTS } from '@talon/kit/subjects';
import { defaultModel, modelNotFound, resolveModel, type ModelEntry, type ModelsConfig } from '@talon/kit/models';
import { TalonError } from '@talon/kit/errors';
import { InboundMessage, type OutboundMessage, type StreamChunk } from '@talon/proto';
import type { AgentNames } from './agents.ts';
import type { Principal } from './auth.ts';
import type { ChatRequest } from './chat.ts';
import { redactMessages, type TextRedactor } from './redaction.ts';
import type { ReplyRouter } from './replies.ts';
import { queueInbound } from './queue.ts';

export interface TurnHooks {
  /** Called once the turn is durably queued (e.g. to send response headers). */
  onQueued?: () => void;
  /** Stream deltas of one attempt, in order (retried attempts are not interleaved). */
  onDelta?: (text: string) => void;
  /** Resolves the turn early (client went away): the wait ends, the turn continues. */
  abort?: AbortSignal;
}

export interface TurnResult {
  id: string;
  /** Undefined: timed out or aborted. */
  out: OutboundMessage | undefined;
  /** Text already relayed as deltas. */
  sent: string;
  /** A retried attempt streamed something else after deltas were sent. */
  interrupted: boolean;
}

/** What remains to send after the final reply: the missing tail, or 'mismatch' when a retry diverged. */
export function remainder(r: TurnResult): string | 'mismatch' {
  const content = r.out?.content ?? '';
  if (r.interrupted && !content.startsWith(r.sent)) return 'mismatch';
  if (content.startsWith(r.sent)) return content.slice(r.sent.length);
  return r.sent === '' ? content : 'mismatch';
}

export class TurnRunner {
  private readonly router: ReplyRouter;
  private readonly js: JetStreamClient;
  private readonly timeoutMs: number;
  private readonly redactor: TextRedactor;
  /** The models clients may name (TALON_LLM_MODELS); listed by /v1/models. */
  readonly models: ModelsConfig;
  /** Agent names clients may give as `model` (talon agents); undefined: none. */
  private readonly agents: Pick<AgentNames, 'names'> | undefined;

  constructor(
    router: ReplyRouter,
    js: JetStreamClient,
    timeoutMs: number,
    redactor: TextRedactor,
    models: ModelsConfig,
    agents?: Pick<AgentNames, 'names'>,
  ) {
    this.router = router;
    this.js = js;
    this.timeoutMs = timeoutMs;
    this.redactor = redactor;
    this.models = models;
    this.agents = agents;
  }

  /** The agent profiles' names, listed by /v1/models after the models. */
  async agentNames(): Promise<readonly string[]> {
    return this.agents ? await this.agents.names() : [];
  }

  /**
   * The model a request names ('' or "talon": the default) or an agent's name (it travels
   * as the model; the orchestrator routes the turn to the agent); 404 model_not_found for any other name.
   */
  async model(requested: string): Promise<Pick<ModelEntry, 'name'>> {
    const entry = resolveModel(this.models, requested);
    if (entry) return entry;
    if (requested !== '' && (await this.agentNames()).includes(requested)) return { name: requested };
    throw modelNotFound(this.models, requested);
  }

  async run(
    principal: Principal,
    chat: ChatRequest,
    channel: 'api' | 'web',
    hooks: TurnHooks = {},
    id: string = randomUUID(),
  ): Promise<TurnResult> {
    // No turn is queued for a model that does not exist.
    const model = await this.model(chat.model);
    // Images only for a model configured with "vision": true (an agent's name: its provider decides).
    const entry = resolveModel(this.models, chat.model);
    if (chat.images > 0 && entry && !entry.vision) {
      throw new TalonError(
        'model_not_vision_capable',
        `The model \`${entry.name}\` does not accept image parts; use a model configured with "vision": true (TALON_LLM_MODELS)`,
        { param: 'messages' },
      );
    }
    // Before anything is queued or stored: a pasted credential never leaves the gateway.
    const clean = await redactMessages(this.redactor, chat.messages);
    const inbound: InboundMessage = {
      id,
      conversation: { userId: principal.userId, channel, threadId: chat.conversationId },
      messages: clean.messages,
      redacted: clean.labels,
      stream: chat.stream,
      reply: { subject: this.router.replySubject, streamSubject: chat.stream ? this.router.streamSubject(id) : '', requestId: id },
      // The default travels as '': the orchestrator's default answers even if its list was changed first.
      model: model === defaultModel(this.models) ? '' : model.name,
      receivedAtMs: Date.now(),
      temperature: chat.temperature,
      maxTokens: chat.maxTokens,
      ...(chat.clientTools ? { clientTools: chat.clientTools } : {}),
    };
    let settle!: (m: OutboundMessage | undefined) => void;
    const done = new Promise<OutboundMessage | undefined>((r) => (settle = r));
    let lockedAttempt = 0;
    const result: TurnResult = { id, out: undefined, sent: '', interrupted: false };
    this.router.register(id, {
      onReply: (m) => settle(m),
      onChunk:
        chat.stream && hooks.onDelta
          ? (c: StreamChunk) => {
              if (lockedAttempt === 0) lockedAttempt = c.attempt;
              if (c.attempt !== lockedAttempt) {
                // A retried turn streams again; never interleave two attempts.
                if (result.sent !== '') result.interrupted = true;
                else lockedAttempt = c.attempt;
              }
              if (c.attempt !== lockedAttempt || result.interrupted) return;
              result.sent += c.delta;
              hooks.onDelta!(c.delta);
            }
          : undefined,
    });
    const timer = setTimeout(() => settle(undefined), this.timeoutMs);
    const onAbort = () => settle(undefined);
    hooks.abort?.addEventListener('abort', onAbort, { once: true });
    try {
      await queueInbound(this.js, SUBJECTS.inbound(channel), InboundMessage.encode(inbound).finish(), id, {
        ...(hooks.abort ? { signal: hooks.abort } : {}),
        unavailable: 'the message could not be queued (NATS unavailable); retry shortly',
      });
      hooks.onQueued?.();
      result.out = await done;
      return result;
    } finally {
      clearTimeout(timer);
      hooks.abort?.removeEventListener('abort', onAbort);
      this.router.forget(id);
    }
  }

  get timeout(): number {
    return this.timeoutMs;
  }
}
