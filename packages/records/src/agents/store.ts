// talon_agents: agent profiles (`agent.<name>`), written by the admin identity
// (`talon agents`), read by the orchestrator (routing, the turn) and the gateway (an
// agent's name as a model). Changes are compare-and-set on the record's revision.
import type { JetStreamManager } from '@nats-io/jetstream';
import { KV_BUCKETS, agentKey } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { AgentProfile } from '@talon/proto';
import { isWrongSequence, openBucket, readAll, type Bucket } from '../kv.ts';

export class AgentProfiles {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.agents, jsm);
    return this;
  }

  async get(name: string): Promise<{ profile: AgentProfile; revision: number } | undefined> {
    const e = await this.b.get(agentKey(name));
    return e ? { profile: AgentProfile.decode(e.value), revision: e.revision } : undefined;
  }

  /** Every profile, ordered by name. */
  async list(): Promise<AgentProfile[]> {
    return (await readAll(this.b, 'agent.', (v) => AgentProfile.decode(v)))
      .map((r) => r.value)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Creates a profile; false when one of that name exists. */
  async create(p: AgentProfile): Promise<boolean> {
    try {
      await this.b.kv.create(agentKey(p.name), AgentProfile.encode(p).finish());
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /** Compare-and-set: false when the profile changed since `revision`. */
  async update(p: AgentProfile, revision: number): Promise<boolean> {
    try {
      await this.b.kv.update(agentKey(p.name), AgentProfile.encode(p).finish(), revision);
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    await this.b.kv.purge(agentKey(name));
  }
}
