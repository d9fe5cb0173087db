// Every egress decision becomes an event on the TALON_AUDIT JetStream stream.
// Publishing never blocks a request: events queue in memory (bounded) and are
// sent in order; if NATS is down they wait, and past the bound they are counted as dropped.
import { randomUUID } from 'node:crypto';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { SUBJECTS } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { EgressDecision } from '@talon/proto';

export type DecisionInput = Omit<EgressDecision, 'id' | 'atMs'>;

/** A decision record with every field defaulted. */
export function decision(d: Partial<DecisionInput>): DecisionInput {
  return {
    principal: '',
    method: '',
    scheme: '',
    host: '',
    port: 0,
    path: '',
    allowed: false,
    reason: '',
    status: 0,
    durationMs: 0,
    traceId: '',
    secrets: [],
    findings: [],
    via: '',
    query: '',
    requestHeaders: [],
    responseHeaders: [],
    requestBodyBytes: 0,
    responseBodyBytes: 0,
    waitMs: 0,
    redactions: 0,
    address: '',
    ...d,
  };
}

export class AuditSink {
  private readonly nc: NatsConnection;
  private readonly queue: EgressDecision[] = [];
  private readonly log: Logger;
  private readonly max: number;
  private pumping = false;
  dropped = 0;
  published = 0;

  constructor(nc: NatsConnection, log: Logger, max = 10_000) {
    this.nc = nc;
    this.log = log;
    this.max = max;
  }

  record(d: DecisionInput): EgressDecision {
    const ev: EgressDecision = { ...d, id: randomUUID(), atMs: Date.now() };
    if (this.queue.length >= this.max) {
      this.queue.shift();
      this.dropped += 1;
      if (this.dropped % 1000 === 1) this.log.error({ dropped: this.dropped }, 'audit queue full; oldest decisions dropped');
    }
    this.queue.push(ev);
    void this.pump();
    return ev;
  }

  /**
   * Publishes queued decisions in batches onto the stream's subject and confirms
   * each batch with a round trip to the server (per-message JetStream acks cost
   * more than the proxying itself); a batch that cannot be confirmed stays queued
   * and is sent again (Nats-Msg-Id de-duplicates the repeat).
   */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, 256);
        try {
          for (const ev of batch) {
            const h = natsHeaders();
            h.set('Nats-Msg-Id', ev.id);
            this.nc.publish(SUBJECTS.auditEgress('decision'), EgressDecision.encode(ev).finish(), { headers: h });
          }
          await this.nc.flush();
          this.published += batch.length;
        } catch (err) {
          this.queue.unshift(...batch);
          this.log.warn({ err: (err as Error).message, queued: this.queue.length }, 'audit publish failed; retrying');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Waits (bounded) until queued decisions are published. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
}
