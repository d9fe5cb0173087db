// Grants of principals that are not services (skills, MCP servers), read from their records'
// KV bucket and kept for a while; any change to the bucket (approve, revoke, re-install,
// remove) drops every cached grant at once. A registry that cannot be read refuses.
import type { Subscription } from '@nats-io/transport-node';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import type { DestinationRule } from './policy.ts';

export interface Grant {
  rules: DestinationRule[];
  secrets: ReadonlySet<string>;
}
export type GrantAnswer = Grant | { refused: string };

export class GrantCache {
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private readonly bucket: string;
  /** The registry's name in the log line, and the refusal reason when it cannot be read. */
  private readonly registry: { name: string; unavailable: string };
  private readonly ttlMs: number;
  private readonly cache = new Map<string, { at: number; grant: GrantAnswer }>();
  private sub: Subscription | undefined;

  constructor(nc: NatsConnection, log: Logger, o: { bucket: string; registry: { name: string; unavailable: string }; ttlMs: number }) {
    this.nc = nc;
    this.log = log;
    this.bucket = o.bucket;
    this.registry = o.registry;
    this.ttlMs = o.ttlMs;
  }

  start(): void {
    this.sub = this.nc.subscribe(`$KV.${this.bucket}.>`, {
      callback: () => {
        if (this.cache.size > 0) this.cache.clear();
      },
    });
  }

  /** The cached grant of `principal`, or the one `load` reads (cached too). */
  async get(principal: string, load: () => Promise<GrantAnswer>): Promise<GrantAnswer> {
    const hit = this.cache.get(principal);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.grant;
    let grant: GrantAnswer;
    try {
      grant = await load();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, `${this.registry.name} unavailable`);
      return { refused: this.registry.unavailable };
    }
    this.cache.set(principal, { at: Date.now(), grant });
    return grant;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
