// Every tool call the model asks for leaves two traces: a turn in the
// conversation's memory (role and source "tool", idempotent id
// `<inbound id>:tool:<call index>`) holding a small JSON summary — tool, skill,
// version, input (scrubbed, cut), outcome, duration — and an audit event on
// talon.audit.orchestrator.tool (JetStream TALON_AUDIT) that carries no input at all,
// only its hash and size. Inputs come from the model, which never sees a secret
// value; they are scrubbed of credential shapes all the same.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { scrub, type Logger } from '@talon/kit/log';
import { SUBJECTS } from '@talon/kit/subjects';
import { tracedHeaders, type NatsConnection } from '@talon/kit/nats';
import { ToolCallAudit, type ConversationRef, type Turn } from '@talon/proto';
import type { ToolCallReport } from './agent-loop.ts';

export const RECORD_INPUT_MAX_CHARS = 1000;

export function toolEventId(inboundId: string, callIndex: number): string {
  return `${inboundId}:tool:${callIndex}`;
}

/** The JSON content of a tool call's memory turn. Pure. */
export function toolRecordContent(r: ToolCallReport, maxInput = RECORD_INPUT_MAX_CHARS): string {
  const raw = scrub(r.call.arguments);
  const input = raw.length <= maxInput ? raw : `${raw.slice(0, maxInput)}...[${raw.length - maxInput} more characters]`;
  return JSON.stringify({
    tool: r.call.name.slice(0, 64),
    ...(r.tool?.meta ? { skill: r.tool.meta.skill, version: r.tool.meta.version } : {}),
    input,
    outcome: r.ok ? 'ok' : r.code,
    duration_ms: Math.max(0, Math.round(r.ms)),
    ...(r.note ? { approval: r.note.approval, approval_id: r.note.approvalId } : {}),
  });
}

export function toolRecordTurn(inboundId: string, r: ToolCallReport, now = Date.now()): Turn {
  return { id: toolEventId(inboundId, r.callIndex), role: 'tool', source: 'tool', content: toolRecordContent(r), createdAtMs: now };
}

export const NODE_NAME = `${hostname()}:${process.pid}`;

export function toolAuditEvent(
  inboundId: string,
  conversation: ConversationRef | undefined,
  r: ToolCallReport,
  now = Date.now(),
): ToolCallAudit {
  return {
    eventId: toolEventId(inboundId, r.callIndex),
    inboundId,
    callIndex: r.callIndex,
    step: r.step,
    conversation,
    tool: r.call.name.slice(0, 64),
    skill: r.tool?.meta?.skill ?? '',
    version: r.tool?.meta?.version ?? '',
    outcome: r.ok ? 'ok' : r.code,
    durationMs: Math.max(0, Math.round(r.ms)),
    inputSha256: createHash('sha256').update(r.call.arguments).digest('hex'),
    inputBytes: Buffer.byteLength(r.call.arguments),
    outputChars: r.outputChars,
    approvalId: r.note?.approvalId ?? '',
    approval: r.note?.approval ?? '',
    decidedBy: r.note?.decidedBy ?? '',
    atMs: now,
    node: NODE_NAME,
  };
}

/** Publishes audit events to JetStream (deduplicated by event id within the stream's window). */
export class ToolAudit {
  private readonly js: JetStreamClient;
  private readonly log: Logger;

  constructor(nc: NatsConnection, log: Logger) {
    this.js = jetstream(nc);
    this.log = log;
  }

  /** Never throws: a call that already happened is not undone by a lost audit event, which is logged instead. */
  async publish(ev: ToolCallAudit): Promise<void> {
    try {
      await this.js.publish(SUBJECTS.auditOrchestrator('tool'), ToolCallAudit.encode(ev).finish(), {
        msgID: ev.eventId,
        headers: tracedHeaders(),
        timeout: 3000,
      });
    } catch (err) {
      this.log.error(
        { event_id: ev.eventId, tool: ev.tool, outcome: ev.outcome, err: (err as Error).message },
        'could not publish the tool call audit event',
      );
    }
  }
}
