// Every egress decision becomes an event on the TALON_AUDIT JetStream stream.
// Publishing never blocks a request: events queue in memory (bounded) and are
// sent in order; if NATS is down they wait, and past the bound they are counted as dropped.
//
// Each process is one hash chain (packages/kit/src/audit-chain.ts): a decision is
// linked when it leaves the queue for publishing, so only published decisions
// are chained and a queue overflow drops unlinked ones (no false gap); a linked
// batch is retried as it is until it is confirmed.
import { randomUUID } from 'node:crypto';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { GENESIS_HASH, linkHash } from '@talon/kit/audit-chain';
import { SUBJECTS } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { EgressDecision } from '@talon/proto';
import { countDecision } from './metrics.ts';

export type DecisionInput = Omit<EgressDecision, 'id' | 'atMs' | 'link'>;

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
    user: '',
    ...d,
  };
}

export class AuditSink {
  private readonly nc: NatsConnection;
  private readonly queue: EgressDecision[] = [];
  private readonly log: Logger;
  private readonly max: number;
  private pumping = false;
  /** Decisions linked and being published (not in `queue`). */
  private inflight = 0;
  /** This process's chain: its id, the last position used and that message's hash. */
  readonly chain = randomUUID();
  private seq = 0;
  private prev = GENESIS_HASH;
  dropped = 0;
  published = 0;

  constructor(nc: NatsConnection, log: Logger, max = 10_000) {
    this.nc = nc;
    this.log = log;
    this.max = max;
  }

  record(d: DecisionInput): EgressDecision {
    countDecision(d);
    const ev: EgressDecision = { ...d, id: randomUUID(), atMs: Date.now(), link: undefined };
    if (this.queue.length >= this.max) {
      this.queue.shift();
      this.dropped += 1;
      if (this.dropped % 1000 === 1) this.log.error({ dropped: this.dropped }, 'audit queue full; oldest decisions dropped');
    }
    this.queue.push(ev);
    void this.pump();
    return ev;
  }

  /** Gives a decision the next place in this process's chain; returns its message bytes. */
  private link(ev: EgressDecision): Uint8Array {
    this.seq += 1;
    ev.link = { chain: this.chain, seq: this.seq, prev: this.prev };
    const bytes = EgressDecision.encode(ev).finish();
    this.prev = linkHash(this.prev, bytes);
    return bytes;
  }

  /**
   * Publishes queued decisions in batches onto the stream's subject and confirms
   * each batch with a round trip to the server (per-message JetStream acks cost
   * more than the proxying itself); a batch that cannot be confirmed is sent
   * again, the same bytes (Nats-Msg-Id de-duplicates the repeat).
   */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, 256).map((ev) => ({ id: ev.id, bytes: this.link(ev) }));
        this.inflight = batch.length;
        for (;;) {
          try {
            for (const ev of batch) {
              const h = natsHeaders();
              h.set('Nats-Msg-Id', ev.id);
              this.nc.publish(SUBJECTS.auditEgress('decision'), ev.bytes, { headers: h });
            }
            await this.nc.flush();
            this.published += batch.length;
            break;
          } catch (err) {
            if (this.nc.isClosed()) {
              this.log.error({ lost: this.queue.length + batch.length }, 'audit decisions not published: the NATS connection is closed');
              this.queue.length = 0;
              return;
            }
            this.log.warn({ err: (err as Error).message, queued: this.queue.length + batch.length }, 'audit publish failed; retrying');
            await new Promise((r) => setTimeout(r, 500));
          }
        }
        this.inflight = 0;
      }
    } finally {
      this.inflight = 0;
      this.pumping = false;
    }
  }

  /** Waits (bounded) until queued decisions are published. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.queue.length > 0 || this.inflight > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
}
