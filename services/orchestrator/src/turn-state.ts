// Parked turns in KV bucket talon_turns (proto talon.agent.v1.ParkedTurn), owned by
// the orchestrator. A turn waiting for an approval is written here before its
// inbound message is acknowledged; whichever replica continues it first claims it by
// compare-and-set on the revision, so exactly one does. Reads are direct gets, the
// key list comes from stream info: no consumers. The conversions between the loop's
// progress and its protobuf form are pure and tested on their own.
import { createHash } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV } from '@nats-io/kv';
import { KV_BUCKETS } from '@talon/kit/subjects';
import { type NatsConnection, openDirectKv } from '@talon/kit/nats';
import {
  AgentLoopProgress,
  InboundMessage,
  OutboundMessage,
  ParkedTurn,
  ParkedTurnStatus,
  type AgentMessage,
  type Turn,
} from '@talon/proto';
import type { LoopProgress } from './agent-loop.ts';
import { liveEntry } from '@talon/records';
import { isWrongSequence, kvCall } from './approvals.ts';
import type { LlmMessage } from './llm/types.ts';
import type { StoredStatus } from './turn-machine.ts';

export const TURN_KEY_PREFIX = 'turn.';

/** KV key of a turn: inbound ids come from many channels, so the key is a hash of the id. */
export function turnKey(inboundId: string): string {
  return `${TURN_KEY_PREFIX}${createHash('sha256').update(inboundId).digest('hex').slice(0, 32)}`;
}

function toMessage(m: LlmMessage): AgentMessage {
  const base: AgentMessage = { role: m.role, content: m.content, toolCalls: [], toolCallId: '', name: '' };
  if (m.role === 'assistant' && m.toolCalls) base.toolCalls = m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments }));
  if (m.role === 'tool') {
    base.toolCallId = m.toolCallId;
    base.name = m.name;
  }
  return base;
}

export class TurnStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TurnStateError';
  }
}

function fromMessage(m: AgentMessage): LlmMessage {
  switch (m.role) {
    case 'system':
    case 'user':
      return { role: m.role, content: m.content };
    case 'assistant':
      return m.toolCalls.length > 0
        ? { role: 'assistant', content: m.content, toolCalls: m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })) }
        : { role: 'assistant', content: m.content };
    case 'tool':
      return { role: 'tool', toolCallId: m.toolCallId, name: m.name, content: m.content };
    default:
      throw new TurnStateError(`stored turn holds a message with unknown role ${JSON.stringify(m.role.slice(0, 20))}`);
  }
}

export function progressToProto(p: LoopProgress): AgentLoopProgress {
  return {
    messages: p.messages.map(toMessage),
    steps: p.steps,
    callIndex: p.callIndex,
    toolCallsRun: p.toolCallsRun,
    text: p.text,
    promptTokens: p.usage.promptTokens,
    completionTokens: p.usage.completionTokens,
    elapsedMs: Math.max(0, Math.round(p.elapsedMs)),
    model: p.model,
    finishReason: p.finishReason,
  };
}

export function progressFromProto(x: AgentLoopProgress | undefined): LoopProgress {
  if (!x) throw new TurnStateError('stored turn has no loop progress');
  return {
    messages: x.messages.map(fromMessage),
    steps: x.steps,
    callIndex: x.callIndex,
    toolCallsRun: x.toolCallsRun,
    text: x.text,
    usage: { promptTokens: x.promptTokens, completionTokens: x.completionTokens, totalTokens: x.promptTokens + x.completionTokens },
    elapsedMs: x.elapsedMs,
    model: x.model,
    finishReason: x.finishReason,
  };
}

/** A stored turn's state as the state machine names it (turn-machine.ts): a RUNNING turn with a reply has its answer. */
export function storedStatus(t: Pick<ParkedTurn, 'status' | 'reply' | 'delivered'>): StoredStatus {
  switch (t.status) {
    case ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING:
      if (t.reply.length === 0) return 'running';
      return t.delivered ? 'delivered' : 'answered';
    case ParkedTurnStatus.PARKED_TURN_STATUS_DONE:
      return 'done';
    default:
      return 'parked';
  }
}

/**
 * The record of an inbound turn whose answer is obtained, written before the reply goes
 * out: RUNNING, owned by this execution for `leaseMs` (the sweep leaves it alone while
 * the worker publishes and records), with the reply and the turns to record. The
 * inbound message is kept without its chat messages: publishing and recording need only
 * its id, conversation and reply route, and the user's text is in memory already.
 */
export function answeredTurn(a: {
  inbound: InboundMessage;
  reply: OutboundMessage;
  records: Turn[];
  attempt: number;
  owner: string;
  leaseMs: number;
  now: number;
}): ParkedTurn {
  return {
    inboundId: a.inbound.id,
    status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING,
    inbound: Buffer.from(InboundMessage.encode({ ...a.inbound, messages: [] }).finish()),
    progress: undefined,
    approvalId: '',
    approval: undefined,
    attempt: a.attempt,
    streamSeq: 0,
    owner: a.owner,
    leaseUntilMs: a.now + a.leaseMs,
    claims: 1,
    createdAtMs: a.now,
    updatedAtMs: a.now,
    reply: Buffer.from(OutboundMessage.encode(a.reply).finish()),
    parks: 0,
    records: a.records,
    delivered: false,
  };
}

/** What is kept once the reply is out and recorded: enough to recognise the turn, nothing of its content. */
export function doneRecord(t: ParkedTurn, now: number): ParkedTurn {
  return {
    ...t,
    status: ParkedTurnStatus.PARKED_TURN_STATUS_DONE,
    inbound: Buffer.alloc(0),
    progress: undefined,
    approval: undefined,
    reply: Buffer.alloc(0),
    records: [],
    delivered: false,
    owner: '',
    leaseUntilMs: 0,
    updatedAtMs: now,
  };
}

export interface StoredTurn {
  key: string;
  turn: ParkedTurn;
  revision: number;
}

export class TurnStore {
  private readonly nc: NatsConnection;
  private kv: KV | undefined;
  private jsm: JetStreamManager | undefined;

  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async start(): Promise<void> {
    this.jsm = await jetstreamManager(this.nc, { checkAPI: false });
    this.kv = await openDirectKv(this.nc, KV_BUCKETS.turns);
  }

  private bucket(): KV {
    if (!this.kv) throw new Error('turn store not started');
    return this.kv;
  }

  async getKey(key: string): Promise<StoredTurn | undefined> {
    const e = liveEntry(await kvCall(KV_BUCKETS.turns, () => this.bucket().get(key)));
    if (!e) return undefined;
    return { key, turn: ParkedTurn.decode(e.value), revision: e.revision };
  }

  get(inboundId: string): Promise<StoredTurn | undefined> {
    return this.getKey(turnKey(inboundId));
  }

  /** Writes a new turn; undefined when one exists already for this inbound id. */
  async create(t: ParkedTurn): Promise<number | undefined> {
    try {
      return await kvCall(KV_BUCKETS.turns, () => this.bucket().create(turnKey(t.inboundId), ParkedTurn.encode(t).finish()));
    } catch (err) {
      if (isWrongSequence(err)) return undefined;
      throw err;
    }
  }

  /** Compare-and-set; the new revision, or undefined when the turn changed since `revision`. */
  async update(t: ParkedTurn, revision: number): Promise<number | undefined> {
    try {
      return await kvCall(KV_BUCKETS.turns, () => this.bucket().update(turnKey(t.inboundId), ParkedTurn.encode(t).finish(), revision));
    } catch (err) {
      if (isWrongSequence(err)) return undefined;
      throw err;
    }
  }

  /** Keys of every stored turn (including finished ones, until they expire). */
  async keys(): Promise<string[]> {
    if (!this.jsm) throw new Error('turn store not started');
    const prefix = `$KV.${KV_BUCKETS.turns}.`;
    const jsm = this.jsm;
    const info = await kvCall(KV_BUCKETS.turns, () =>
      jsm.streams.info(`KV_${KV_BUCKETS.turns}`, { subjects_filter: `${prefix}${TURN_KEY_PREFIX}>` }),
    );
    return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
  }
}
