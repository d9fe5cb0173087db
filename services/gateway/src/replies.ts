// Routes replies and stream chunks from the orchestrator to the HTTP request
// waiting for them on this gateway replica (subjects carry the replica id).
import { randomBytes } from 'node:crypto';
import { SUBJECTS } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { OutboundMessage, StreamChunk } from '@talon/proto';
import type { Subscription } from '@nats-io/transport-node';

export interface PendingReply {
  onChunk?: (c: StreamChunk) => void;
  onReply: (m: OutboundMessage) => void;
}

export class ReplyRouter {
  readonly instance: string;
  private readonly pending = new Map<string, PendingReply>();
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private subs: Subscription[] = [];

  constructor(nc: NatsConnection, log: Logger) {
    this.nc = nc;
    this.log = log;
    this.instance = randomBytes(6).toString('hex');
  }

  get replySubject(): string {
    return SUBJECTS.apiReply(this.instance);
  }

  streamSubject(requestId: string): string {
    return SUBJECTS.stream(this.instance, requestId);
  }

  start(): void {
    const replies = this.nc.subscribe(this.replySubject);
    const chunks = this.nc.subscribe(SUBJECTS.stream(this.instance, '*'));
    this.subs = [replies, chunks];
    void (async () => {
      for await (const m of replies) {
        try {
          const out = OutboundMessage.decode(m.data);
          const p = this.pending.get(out.requestId);
          if (p) {
            this.pending.delete(out.requestId);
            p.onReply(out);
          }
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'undecodable reply');
        }
        // The orchestrator sends a reply until it is acknowledged (core NATS may drop one
        // across a reconnect); a copy of a reply already answered is acknowledged too.
        if (m.reply) m.respond();
      }
    })();
    void (async () => {
      for await (const m of chunks) {
        try {
          const c = StreamChunk.decode(m.data);
          this.pending.get(c.requestId)?.onChunk?.(c);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'undecodable stream chunk');
        }
      }
    })();
  }

  register(requestId: string, p: PendingReply): void {
    this.pending.set(requestId, p);
  }

  forget(requestId: string): void {
    this.pending.delete(requestId);
  }

  get size(): number {
    return this.pending.size;
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
  }
}
