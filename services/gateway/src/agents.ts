// Agent names a client may give as `model` (talon agents, KV talon_agents): listed by
// /v1/models next to the models, and accepted by TurnRunner; the orchestrator routes the
// turn to the agent (services/orchestrator/src/agents.ts). Read-only, cached briefly.
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { AgentProfiles, isAgentName } from '@talon/records/agents';

export class AgentNames {
  private readonly store: AgentProfiles;
  private readonly ttlMs: number;
  private readonly log: Pick<Logger, 'warn'>;
  private cached: { at: number; names: string[] } | undefined;
  private opened: Promise<unknown> | undefined;

  constructor(nc: NatsConnection, opts: { ttlMs: number; log: Pick<Logger, 'warn'> }) {
    this.store = new AgentProfiles(nc);
    this.ttlMs = opts.ttlMs;
    this.log = opts.log;
  }

  /** The profiles' names, in order; the last ones read while NATS KV is away (none if never read). */
  async names(): Promise<readonly string[]> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < this.ttlMs) return this.cached.names;
    try {
      this.opened ??= this.store.open();
      await this.opened;
      const names = (await this.store.list()).map((p) => p.name).filter(isAgentName);
      this.cached = { at: now, names };
      return names;
    } catch (err) {
      this.opened = undefined;
      this.log.warn({ err: (err as Error).message }, 'agent profiles unreadable; offering the last ones read');
      return this.cached?.names ?? [];
    }
  }
}
