// What an MCP server's principal `mcp:<name>` may do through egress: reach the hosts
// of its record (talon_mcp, written by `talon mcp add`) and have filled only the
// secret names its headers use. Only the orchestrator may act for an MCP server
// (x-talon-mcp). Changes to the bucket drop cached grants at once.
import { KV_BUCKETS } from '@talon/kit/subjects';
import { parseMcpPrincipal } from '@talon/kit/contracts';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import type { McpServer } from '@talon/proto';
import { McpServers, parseHostEntry, secretNamesOf } from '@talon/records/mcp';
import { GrantCache, type Grant } from './grant-cache.ts';
import { normalizeHost, type DestinationRule } from './policy.ts';

export type McpGrant = Grant;

/** Streamable HTTP posts messages, may open a GET stream and ends its session with DELETE. */
const MCP_METHODS = ['GET', 'POST', 'DELETE'];

/** The grant a record carries, or why there is none. Pure. */
export function mcpGrantOf(principal: string, rec: McpServer | undefined): McpGrant | { refused: string } {
  if (!rec) return { refused: 'mcp_not_registered' };
  const rules: DestinationRule[] = [];
  for (const h of rec.hosts) {
    const e = parseHostEntry(h);
    if (e) rules.push({ principal, host: normalizeHost(e.host), port: e.port, methods: MCP_METHODS });
  }
  return { rules, secrets: new Set(secretNamesOf(rec.headers)) };
}

export class McpGrants {
  private readonly nc: NatsConnection;
  private servers: McpServers | undefined;
  private readonly cache: GrantCache;

  constructor(nc: NatsConnection, log: Logger, ttlMs = 30_000) {
    this.nc = nc;
    this.cache = new GrantCache(nc, log, {
      bucket: KV_BUCKETS.mcp,
      registry: { name: 'MCP registry', unavailable: 'mcp_registry_unavailable' },
      ttlMs,
    });
  }

  async start(): Promise<void> {
    this.servers = await new McpServers(this.nc).open();
    this.cache.start();
  }

  /** The grant of an `mcp:<name>` principal. */
  async grantFor(principal: string): Promise<McpGrant | { refused: string }> {
    const name = parseMcpPrincipal(principal);
    if (!name) return { refused: 'bad_mcp_principal' };
    const servers = this.servers;
    if (!servers) return { refused: 'mcp_registry_unavailable' };
    return this.cache.get(principal, async () => mcpGrantOf(principal, (await servers.get(name))?.server));
  }

  stop(): void {
    this.cache.stop();
  }
}
