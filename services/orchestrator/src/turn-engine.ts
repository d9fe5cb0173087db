// One turn, from the inbound message to the reply, and its continuation after a
// park. Shared by the inbound worker (new turns) and the resumer (turns that
// waited for an approval):
//   start: history + recall -> record the user turn -> context -> loop;
//   continue: the loop from stored progress, with the tools offered now (memory
//     tools + approved skills, rebuilt for every run so approvals and revocations
//     apply at once);
//   end: either a reply with the turns to record (the caller stores both in
//     talon_turns, publishes, then records: see worker.ts and resume.ts), or a park:
//     tool records written, the turn stored in talon_turns, then the approval
//     created — in that order, so a decision always finds its turn.
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { SpanKind, withSpan } from '@talon/kit/telemetry';
import { TalonError } from '@talon/kit/errors';
import { tracedHeaders, type NatsConnection } from '@talon/kit/nats';
import { replyDelivery } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import {
  InboundMessage,
  OutboundMessage,
  ParkedTurn,
  ParkedTurnStatus,
  Role,
  StreamChunk,
  type Approval,
  type AgentProfile,
  type ConversationRef,
  type SearchHit,
  type Turn,
} from '@talon/proto';
import {
  driveToolLoop,
  newProgress,
  type CallGate,
  type GateDecision,
  type LoopOutcome,
  type LoopProgress,
  type ToolLoopLimits,
} from './agent-loop.ts';
import { APPROVAL_ARGS_MAX_BYTES, approvalIdFor, buildApproval, decisionOf, type ApprovalBook, type ApprovalSubject } from './approvals.ts';
import { assembleContext } from './context.ts';
import { inMemoryScope, memoryConversation, offersMcpTool, offersSkill, routeInbound, type AgentBook } from './agents.ts';
import type { ModelSelector, SelectedModel } from './llm/router.ts';
import type { MemoryApi } from './memory.ts';
import type { Recall } from './recall.ts';
import type { SkillCatalog } from './skills/catalog.ts';
import type { SkillInvoker } from './skills/invoke.ts';
import { skillTool } from './skills/skill-tools.ts';
import type { McpCatalog } from './mcp/catalog.ts';
import { mcpTool } from './mcp/mcp-tools.ts';
import type { McpConnector } from './mcp/session.ts';
import { toolAuditEvent, toolRecordTurn, type ToolAudit } from './tool-record.ts';
import { ToolRegistry, type Tool } from './tools/registry.ts';
import { failedTurnRecord, newUserMessage } from './turn.ts';
import { clientToolsOf, storedAnswerText, storedUserText } from './client-tools.ts';
import { sendAckedInBackground } from './reply-ack.ts';
import { progressToProto, type TurnStore } from './turn-state.ts';
import type { TurnRun } from './turn-machine.ts';
import { leakGuarded, redactionNotice, redactTurns, type TextRedactor } from './redaction.ts';

/** How long one attempt waits for the gateway's acknowledgement of an API reply. */
const REPLY_ACK_TIMEOUT_MS = 2000;
/** How long an API reply is sent again before the gateway that waited is taken for gone. */
const REPLY_ACK_DEADLINE_MS = 60_000;
export type ReplyBody = Omit<OutboundMessage, 'inboundId' | 'conversation' | 'requestId' | 'createdAtMs'>;

/** Largest stored turn; a larger one cannot wait for an approval (NATS max_payload is 4 MiB). */
export const MAX_PARKED_BYTES = 3 * 1024 * 1024;

export interface ParkingOptions {
  approvals: Pick<ApprovalBook, 'settle' | 'create'>;
  turns: Pick<TurnStore, 'create'>;
  /** How long a user has to decide. */
  approvalTtlMs: number;
}

export interface EngineOptions {
  nc: NatsConnection;
  log: Logger;
  /** The deployment's models: a turn's `model` picks one, whose providers fail over in order. */
  llm: ModelSelector;
  memory: MemoryApi;
  systemPrompt: string;
  historyTurns: number;
  recordTurns: boolean;
  recall: Pick<Recall, 'request'>;
  recallLimit: number;
  contextBudgetTokens: number;
  recallBudgetTokens: number;
  /** Built-in tools offered in every turn with a conversation (memory_save, memory_search). */
  tools: readonly Tool[];
  /** Approved skills as tools; undefined: none. */
  skills?: { catalog: Pick<SkillCatalog, 'list'>; invoker: Pick<SkillInvoker, 'invoke'> };
  /** Approved tools of registered MCP servers (talon mcp); undefined: none. */
  mcp?: { catalog: Pick<McpCatalog, 'list' | 'invalidate'>; connector: Pick<McpConnector, 'with'> };
  /** Where turns wait for approvals; undefined: calls needing approval are refused. */
  parking?: ParkingOptions;
  audit?: Pick<ToolAudit, 'publish'>;
  toolLimits: ToolLoopLimits;
  /** Called after this turn wrote memory rows that need a (remote) embedding. */
  onMemoryWritten?: () => void;
  /** Egress's credential redaction (tool outputs, stored turns, a context egress refused); undefined: none. */
  redactor?: TextRedactor;
  /** Agent profiles (talon agents); undefined: every turn is the default agent's. */
  agents?: Pick<AgentBook, 'list' | 'get'>;
  /** Told once a reply went out by its route (a routine's run records its outcome); must not throw. */
  onReplied?: (inbound: InboundMessage, msg: OutboundMessage) => void;
}

export interface ContinueArgs {
  inbound: InboundMessage;
  /** Delivery attempt the reply and stream chunks carry. */
  attempt: number;
  progress: LoopProgress;
  /** Last stream chunk sequence number already sent. */
  streamSeq: number;
  parks: number;
  createdAtMs: number;
  /** Stores a parked turn; false when another execution owns the turn (this one stops). */
  write: (t: ParkedTurn) => Promise<boolean>;
  /** Extra attributes of the turn's llm.call span. */
  attributes?: Record<string, string | number | boolean>;
}

export type TurnOutcome =
  /**
   * The answer, not yet recorded: `records` (tool records and the assistant turn, as
   * produced; empty when turns are not recorded) go to memory through `record` once the
   * caller stored them with the reply and published it.
   */
  | { kind: 'reply'; body: ReplyBody; records: Turn[] }
  | { kind: 'parked'; approvalId: string }
  /** Another execution of the same turn parked or claimed it first: nothing more to do here. */
  | { kind: 'superseded' };

const NO_CONVERSATION: ConversationRef = { userId: '', channel: '', threadId: '' };

export class TurnEngine {
  private readonly audit: EngineOptions['audit'];
  private readonly contextBudgetTokens: EngineOptions['contextBudgetTokens'];
  private readonly historyTurns: EngineOptions['historyTurns'];
  private readonly llm: EngineOptions['llm'];
  private readonly log: EngineOptions['log'];
  private readonly memory: EngineOptions['memory'];
  private readonly nc: EngineOptions['nc'];
  private readonly onMemoryWritten: EngineOptions['onMemoryWritten'];
  private readonly parking: EngineOptions['parking'];
  private readonly recall: EngineOptions['recall'];
  private readonly recallBudgetTokens: EngineOptions['recallBudgetTokens'];
  private readonly recallLimit: EngineOptions['recallLimit'];
  private readonly recordTurns: EngineOptions['recordTurns'];
  private readonly redactor: EngineOptions['redactor'];
  private readonly onReplied: EngineOptions['onReplied'];
  private readonly agents: EngineOptions['agents'];
  private readonly skills: EngineOptions['skills'];
  private readonly mcp: EngineOptions['mcp'];
  private readonly systemPrompt: EngineOptions['systemPrompt'];
  private readonly toolLimits: EngineOptions['toolLimits'];
  private readonly tools: EngineOptions['tools'];
  private readonly js: JetStreamClient;

  constructor(opts: EngineOptions) {
    this.audit = opts.audit;
    this.contextBudgetTokens = opts.contextBudgetTokens;
    this.historyTurns = opts.historyTurns;
    this.llm = opts.llm;
    this.log = opts.log;
    this.memory = opts.memory;
    this.nc = opts.nc;
    this.onMemoryWritten = opts.onMemoryWritten;
    this.parking = opts.parking;
    this.recall = opts.recall;
    this.recallBudgetTokens = opts.recallBudgetTokens;
    this.recallLimit = opts.recallLimit;
    this.recordTurns = opts.recordTurns;
    this.redactor = opts.redactor;
    this.onReplied = opts.onReplied;
    this.agents = opts.agents;
    this.skills = opts.skills;
    this.mcp = opts.mcp;
    this.systemPrompt = opts.systemPrompt;
    this.toolLimits = opts.toolLimits;
    this.tools = opts.tools;
    this.js = jetstream(opts.nc);
  }

  get model(): string {
    return this.llm.defaultModel;
  }

  /**
   * The inbound message as the agent that answers it sees it (agents.ts routeInbound):
   * agent and memory scope set, an `@name` prefix removed. Called once, before the turn
   * is computed, stored or recorded; unchanged without profiles.
   */
  async route(inbound: InboundMessage): Promise<InboundMessage> {
    const agents = this.agents;
    if (!agents) return inbound;
    const list = await agents.list();
    if (list.length === 0 && !inbound.agent) return inbound;
    const r = routeInbound(list, inbound);
    if (inbound.agent && !r.inbound.agent)
      this.log.warn({ inbound_id: inbound.id, agent: inbound.agent }, 'the agent this turn names is gone; the default agent answers');
    else if (r.inbound.agent) this.log.info({ inbound_id: inbound.id, agent: r.inbound.agent, by: r.by }, 'agent chosen');
    return r.inbound;
  }

  /** The conversation in memory of a turn: its thread, suffixed with the agent's memory scope. */
  memoryConversation(inbound: InboundMessage): ConversationRef | undefined {
    return inbound.conversation ? memoryConversation(inbound.conversation, inbound.memoryScope ?? '') : undefined;
  }

  /** A new turn: context from history, recall and the client's messages (phase `context`), then the loop. */
  async start(inbound: InboundMessage, attempt: number, run?: Pick<TurnRun, 'step'>): Promise<TurnOutcome> {
    const conv = this.memoryConversation(inbound);
    const agent = await this.agents?.get(inbound.agent ?? '');
    const userMsg = newUserMessage(inbound);
    const wantHistory = conv && this.historyTurns > 0 && inbound.messages.filter((x) => x.role !== Role.ROLE_SYSTEM).length <= 1;
    const wantRecall = conv && userMsg && this.recallLimit > 0 && this.recallBudgetTokens > 0;
    // One memory call (BeginTurn) stores the new user turn and returns the history
    // before it and the recall hits, ordered and idempotent in memory: a redelivery
    // stores nothing twice and reads the same history.
    const userTurn =
      this.recordTurns && conv && userMsg
        ? { id: `${inbound.id}:user`, role: 'user', source: 'user', content: storedUserText(userMsg), createdAtMs: inbound.receivedAtMs }
        : undefined;
    let history: Turn[] = [];
    let memories: SearchHit[] = [];
    if (conv && (userTurn || wantHistory || wantRecall)) {
      const recall = wantRecall
        ? await this.recall.request(conv.userId, userMsg.content, {
            // An agent's scope drops other scopes' hits (below): ask for more to keep enough.
            limit: !inbound.memoryScope ? this.recallLimit : this.recallLimit * 3,
            exclude: conv,
          })
        : undefined;
      const res = await withSpan('memory.begin_turn', { kind: SpanKind.CLIENT }, () =>
        this.memory.beginTurn({ conversation: conv, userTurn, historyLimit: wantHistory ? this.historyTurns : 0, recall }),
      );
      if (userTurn) this.onMemoryWritten?.();
      history = res.history;
      // An agent recalls the turns of its own memory scope only (and the user's documents).
      memories = res.recalled.filter((h) => inMemoryScope(h, inbound.memoryScope ?? '')).slice(0, this.recallLimit);
      // Recall is an aid, not a requirement: if it failed the turn goes on without it.
      if (res.recallFailed) this.log.warn({ inbound_id: inbound.id }, 'memory recall failed; answering without it');
    }
    const ctx = assembleContext({
      systemPrompt: agent?.systemPrompt || this.systemPrompt,
      inbound: inbound.messages,
      stored: history,
      memories,
      budgetTokens: this.contextBudgetTokens,
      recallBudgetTokens: this.recallBudgetTokens,
    });
    run?.step('context_ready');
    const parking = this.parking;
    return this.continue({
      inbound,
      attempt,
      progress: newProgress(ctx.messages),
      streamSeq: 0,
      parks: 0,
      createdAtMs: Date.now(),
      write: async (t) => (parking ? (await parking.turns.create(t)) !== undefined : false),
      attributes: { 'talon.memories_recalled': ctx.memoriesUsed, 'talon.context_tokens_estimate': ctx.estimatedTokens },
    });
  }

  /** The tools of a turn: built-in ones plus the skills and MCP tools approved right now (those the agent is allowed). */
  async registry(agent?: AgentProfile): Promise<ToolRegistry> {
    const reg = new ToolRegistry();
    for (const t of this.tools) reg.register(t);
    await this.registerMcp(reg, agent);
    const skills = this.skills;
    if (!skills) return reg;
    let offered: Awaited<ReturnType<SkillCatalog['list']>> = [];
    try {
      offered = await skills.catalog.list();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'skill registry unreachable; this turn offers no skills');
    }
    for (const s of offered) {
      if (!offersSkill(agent, s.name)) continue;
      try {
        reg.register(skillTool(s, skills.invoker));
      } catch (err) {
        this.log.warn({ skill: `${s.name}@${s.version}`, err: (err as Error).message }, 'skill not offered');
      }
    }
    return reg;
  }

  /** MCP tools whose listing still matches their approval (a changed one is not offered). */
  private async registerMcp(reg: ToolRegistry, agent: AgentProfile | undefined): Promise<void> {
    const mcp = this.mcp;
    if (!mcp) return;
    let offered: Awaited<ReturnType<McpCatalog['list']>> = [];
    try {
      offered = await mcp.catalog.list();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'MCP registry unreachable; this turn offers no MCP tools');
    }
    for (const t of offered) {
      if (!offersMcpTool(agent, t.server.name, t.tool)) continue;
      try {
        reg.register(mcpTool(t, mcp.connector, () => mcp.catalog.invalidate()));
      } catch (err) {
        this.log.warn({ server: t.server.name, tool: t.tool.slice(0, 64), err: (err as Error).message }, 'MCP tool not offered');
      }
    }
  }

  /** Before a call runs: does it need the user's approval, and what did they decide? */
  private gate(inboundId: string, conversation: ConversationRef): CallGate {
    return async (g): Promise<GateDecision> => {
      const meta = g.tool.meta;
      if (!meta?.requiresApproval) return { kind: 'run', userApproved: false };
      const parking = this.parking;
      if (!parking) {
        return {
          kind: 'answer',
          code: 'approval_unavailable',
          output: "error: this skill needs the user's approval for every call and approvals are not available; it was not run",
        };
      }
      const argumentsJson = JSON.stringify(g.args);
      if (Buffer.byteLength(argumentsJson) > APPROVAL_ARGS_MAX_BYTES) {
        return {
          kind: 'answer',
          code: 'arguments_too_large',
          output: `error: the arguments are larger than ${APPROVAL_ARGS_MAX_BYTES} bytes, too large to show the user for approval; it was not run`,
        };
      }
      const subject: ApprovalSubject = {
        inboundId,
        callIndex: g.callIndex,
        conversation,
        tool: g.tool.name,
        skill: meta.skill,
        version: meta.version,
        argumentsJson,
      };
      const id = approvalIdFor(subject);
      const now = Date.now();
      const stored = await parking.approvals.settle(id, now);
      if (!stored) return { kind: 'park', data: buildApproval(subject, now, parking.approvalTtlMs) };
      const state = decisionOf(stored, subject, now);
      const note = { approvalId: id, approval: state, decidedBy: stored.decidedBy };
      switch (state) {
        case 'pending':
          return { kind: 'park', data: stored };
        case 'approved':
          return { kind: 'run', userApproved: true, note };
        case 'denied': {
          const reason = stored.reason.replace(/\s+/g, ' ').trim().slice(0, 300);
          return {
            kind: 'answer',
            code: 'denied',
            note,
            output: `error: the user denied this call${reason ? ` (reason: ${reason})` : ''}; it was not run. Do not call it again unless the user asks.`,
          };
        }
        case 'expired':
          return {
            kind: 'answer',
            code: 'approval_expired',
            note,
            output: 'error: the user did not approve this call in time; it was not run.',
          };
        default:
          this.log.error(
            { inbound_id: inboundId, approval_id: id },
            'approval record does not match the call it is named for; not running it',
          );
          return {
            kind: 'answer',
            code: 'approval_mismatch',
            note,
            output: 'error: the approval record for this call does not match it; it was not run.',
          };
      }
    };
  }

  /** Runs (or continues) the loop of a turn until it answers or parks. */
  async continue(a: ContinueArgs): Promise<TurnOutcome> {
    const conv = a.inbound.conversation;
    const agent = await this.agents?.get(a.inbound.agent ?? '');
    // The gateway lets no unknown model through; one unknown here (configurations that differ) fails the turn.
    // An agent answers with its chain, under the name the client asked for when that was the agent's.
    const model = agent
      ? this.llm.chain(a.inbound.model === agent.name ? agent.name : agent.model, [agent.model, ...agent.failover])
      : this.llm.select(a.inbound.model);
    // Without a conversation there is no user to act for: no tools.
    // A client that sends its own tools (OpenAI API) is offered only those: Talon's are not looked up.
    const tools = conv && !clientToolsOf(a.inbound) ? await this.registry(agent) : new ToolRegistry();
    const stream = this.streamer(a);
    const records: Turn[] = [];
    // Credentials removed from the context after egress refused a model call (stored before redaction existed).
    const fromContext: string[] = [];
    const out = await this.loop(a, model, tools, stream.onDelta, records, fromContext);
    if (out.status === 'parked') return this.park(a, out, stream.seq(), records);
    return this.answer(a, model, out, records, fromContext);
  }

  /** Stream deltas of this attempt, numbered on from what an earlier run of the turn sent. */
  private streamer(a: ContinueArgs): { onDelta: ((delta: string) => void) | undefined; seq: () => number } {
    const { inbound } = a;
    let seq = a.streamSeq;
    const subject = inbound.stream ? (inbound.reply?.streamSubject ?? '') : '';
    const onDelta = subject
      ? (delta: string) => {
          seq += 1;
          this.nc.publish(
            subject,
            StreamChunk.encode({ requestId: inbound.reply?.requestId ?? '', seq, delta, attempt: a.attempt }).finish(),
          );
        }
      : undefined;
    return { onDelta, seq: () => seq };
  }

  /** Records a turn's answer (idempotent by turn id); redacted on the way like every stored turn. */
  record(inbound: InboundMessage, turns: Turn[]): Promise<void> {
    return this.store(this.memoryConversation(inbound), turns);
  }

  /** Tool records and answers go to memory redacted (egress's RedactText), never as the model wrote them. */
  private async store(conv: ConversationRef | undefined, turns: Turn[]): Promise<void> {
    if (turns.length === 0 || !conv) return;
    const redactor = this.redactor;
    await this.memory.append(conv, redactor ? await redactTurns(redactor, turns) : turns);
    this.onMemoryWritten?.();
  }

  /** The model and tools, within the turn's limits; every call is logged, recorded and audited. */
  private loop(
    a: ContinueArgs,
    model: SelectedModel,
    tools: ToolRegistry,
    onDelta: ((delta: string) => void) | undefined,
    records: Turn[],
    fromContext: string[],
  ): Promise<LoopOutcome> {
    const { inbound } = a;
    const conv = inbound.conversation;
    const redactor = this.redactor;
    const llm = redactor ? leakGuarded(model, redactor, (labels) => fromContext.push(...labels)) : model;
    return withSpan(
      'llm.call',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'gen_ai.request.model': model.name,
          'talon.stream': inbound.stream,
          'talon.resumed': a.progress.steps > 0,
          'talon.tools_offered': tools.size,
          ...a.attributes,
        },
      },
      async (span) => {
        const out = await driveToolLoop({
          llm,
          tools,
          messages: a.progress.messages,
          resume: a.progress,
          context: { conversation: conv ?? NO_CONVERSATION, inboundId: inbound.id },
          limits: this.toolLimits,
          stream: inbound.stream,
          ...(clientToolsOf(inbound) ? { clientTools: clientToolsOf(inbound) } : {}),
          ...(inbound.temperature !== undefined ? { temperature: inbound.temperature } : {}),
          ...(inbound.maxTokens !== undefined ? { maxTokens: inbound.maxTokens } : {}),
          ...(onDelta ? { onDelta } : {}),
          ...(conv ? { gate: this.gate(inbound.id, conv) } : {}),
          ...(redactor ? { redactOutput: async (text: string) => (await redactor.redactTexts([text]))[0]?.text ?? text } : {}),
          onToolCall: async (r) => {
            this.log.info(
              {
                inbound_id: inbound.id,
                tool: r.call.name.slice(0, 64),
                ...(r.tool?.meta ? { skill: r.tool.meta.skill, version: r.tool.meta.version } : {}),
                outcome: r.ok ? 'ok' : r.code,
                ms: r.ms,
                step: r.step,
                call_index: r.callIndex,
                ...(r.note ? { approval: r.note.approval } : {}),
              },
              'tool call',
            );
            if (this.recordTurns && conv) records.push(toolRecordTurn(inbound.id, r));
            await this.audit?.publish(toolAuditEvent(inbound.id, conv, r));
          },
        });
        // Which provider of the model answered, and the model it says it is.
        if (out.status === 'done') span.setAttributes({ 'gen_ai.response.model': out.model, 'talon.llm.provider': out.provider ?? '' });
        return out;
      },
    );
  }

  /** Parks the turn: tool records to memory, the turn stored (talon_turns), then the approval asked for — in that order. */
  private async park(
    a: ContinueArgs,
    out: Extract<LoopOutcome, { status: 'parked' }>,
    streamSeq: number,
    records: Turn[],
  ): Promise<TurnOutcome> {
    const { inbound } = a;
    await this.store(this.memoryConversation(inbound), records);
    const approval = out.data as Approval;
    const now = Date.now();
    const turn: ParkedTurn = {
      inboundId: inbound.id,
      status: ParkedTurnStatus.PARKED_TURN_STATUS_PARKED,
      inbound: Buffer.from(InboundMessage.encode(inbound).finish()),
      progress: progressToProto(out.progress),
      approvalId: approval.id,
      approval,
      attempt: a.attempt,
      streamSeq,
      owner: '',
      leaseUntilMs: 0,
      claims: 0,
      createdAtMs: a.createdAtMs,
      updatedAtMs: now,
      reply: Buffer.alloc(0),
      parks: a.parks + 1,
      records: [],
      delivered: false,
    };
    const size = ParkedTurn.encode(turn).finish().length;
    if (size > MAX_PARKED_BYTES) {
      throw new TalonError(
        'payload_too_large',
        `this turn (${size} bytes of context) is too large to wait for an approval; start a new conversation or shorten it`,
      );
    }
    if (!(await a.write(turn))) return { kind: 'superseded' };
    await this.parking!.approvals.create(approval);
    this.log.info(
      { inbound_id: inbound.id, approval_id: approval.id, skill: approval.skill, version: approval.version, call_index: out.callIndex },
      'turn parked until the user decides on a tool call',
    );
    return { kind: 'parked', approvalId: approval.id };
  }

  /** The reply and the turns to record (recorded by the caller once the answer is stored and out). */
  private answer(
    a: ContinueArgs,
    model: SelectedModel,
    out: Extract<LoopOutcome, { status: 'done' }>,
    records: Turn[],
    fromContext: string[],
  ): TurnOutcome {
    const { inbound } = a;
    const conv = inbound.conversation;
    if (out.toolCallsRun > 0) this.onMemoryWritten?.();
    const toRecord =
      this.recordTurns && conv
        ? [
            ...records,
            {
              id: `${inbound.id}:assistant`,
              role: 'assistant',
              source: 'assistant',
              content: storedAnswerText(out.content, out.toolCalls),
              createdAtMs: Date.now(),
            },
          ]
        : [];
    // Told after the answer (a streamed reply gets it as the remaining tail); never stored as part of the answer.
    const notice = redactionNotice(inbound.redacted, [...new Set(fromContext)]);
    return {
      kind: 'reply',
      records: toRecord,
      body: {
        content: notice ? `${out.content}\n\n${notice}` : out.content,
        // The public name the client asked for (OpenAI's clients expect it back), not the provider's.
        model: model.name,
        finishReason: out.finishReason,
        ...(out.toolCalls.length > 0 ? { clientToolCalls: { calls: out.toolCalls } } : {}),
        usage: out.usage,
        error: undefined,
        attempt: a.attempt,
      },
    };
  }

  /** The reply message for an inbound message. */
  outbound(inbound: InboundMessage, body: ReplyBody): OutboundMessage {
    return {
      ...body,
      inboundId: inbound.id,
      conversation: inbound.conversation,
      requestId: inbound.reply?.requestId ?? '',
      createdAtMs: Date.now(),
    };
  }

  /**
   * Sends the reply by its route's one delivery (replyDelivery): a channel reply is stored
   * in JetStream, where its message id makes a second publication a no-op (answered exactly
   * once, delivered after a gateway restart); an API reply goes by core NATS to the gateway
   * replica holding the request, sent until that gateway acknowledges it (reply-ack.ts); a
   * kept reply is only recorded.
   */
  async publish(inbound: InboundMessage, msg: OutboundMessage): Promise<void> {
    const subject = inbound.reply?.subject ?? '';
    const data = OutboundMessage.encode(msg).finish();
    switch (replyDelivery(subject)) {
      case 'durable':
        await this.js.publish(subject, data, { msgID: `reply:${inbound.id}`, headers: tracedHeaders(), timeout: 5000 });
        break;
      case 'plain':
        await sendAckedInBackground(() => this.nc.request(subject, data, { headers: tracedHeaders(), timeout: REPLY_ACK_TIMEOUT_MS }), {
          deadlineMs: REPLY_ACK_DEADLINE_MS,
          retryMs: 500,
          stopped: () => this.nc.isClosed(),
          onGiveUp: () =>
            this.log.warn(
              { inbound_id: inbound.id },
              'the gateway holding the request never acknowledged the reply; the answer stays in memory',
            ),
        });
        break;
      case 'kept':
        // Nobody waits for it (a routine delivered to the web): the record in memory is the delivery.
        break;
      default:
        throw new TalonError('invalid_argument', 'the inbound message names no reply route');
    }
    this.onReplied?.(inbound, msg);
  }

  /** What memory keeps of a turn that failed for good after its user turn was stored (turn.ts failedTurnRecord). */
  failedRecords(inbound: InboundMessage, code: string, message: string): Turn[] {
    return this.recordTurns && inbound.conversation && newUserMessage(inbound) ? [failedTurnRecord(inbound.id, code, message)] : [];
  }

  /** An error reply for a turn that failed for good. */
  errorBody(code: string, message: string, attempt: number): ReplyBody {
    return { content: '', model: this.llm.defaultModel, finishReason: 'error', usage: undefined, error: { code, message }, attempt };
  }
}
