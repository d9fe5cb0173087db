// talon_mcp: remote MCP servers (`server.<name>`), written by the admin identity
// (`talon mcp`), read by the orchestrator (tools) and egress (allowlists). Changes are
// compare-and-set on the record's revision, so two operators never lose an approval.
import type { JetStreamManager } from '@nats-io/jetstream';
import { KV_BUCKETS, mcpServerKey } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { McpServer } from '@talon/proto';
import { isWrongSequence, openBucket, readAll, type Bucket } from '../kv.ts';

export class McpServers {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.mcp, jsm);
    return this;
  }

  async get(name: string): Promise<{ server: McpServer; revision: number } | undefined> {
    const e = await this.b.get(mcpServerKey(name));
    return e ? { server: McpServer.decode(e.value), revision: e.revision } : undefined;
  }

  async list(): Promise<McpServer[]> {
    return (await readAll(this.b, 'server.', (v) => McpServer.decode(v))).map((r) => r.value);
  }

  /** Creates a record; false when a server of that name exists. */
  async create(s: McpServer): Promise<boolean> {
    try {
      await this.b.kv.create(mcpServerKey(s.name), McpServer.encode(s).finish());
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  /** Compare-and-set: false when the record changed since `revision`. */
  async update(s: McpServer, revision: number): Promise<boolean> {
    try {
      await this.b.kv.update(mcpServerKey(s.name), McpServer.encode(s).finish(), revision);
      return true;
    } catch (err) {
      if (isWrongSequence(err)) return false;
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    await this.b.kv.purge(mcpServerKey(name));
  }
}
