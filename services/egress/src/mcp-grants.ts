// What an MCP server's principal `mcp:<name>` may do through egress: reach the hosts
// of its record (talon_mcp, written by `talon mcp add`) and have filled only the
// secret names its headers use. Only the orchestrator may act for an MCP server
// (x-talon-mcp). Changes to the bucket drop cached grants at once.
import type { Subscription } from '@nats-io/transport-node';
import { KV_BUCKETS } from '@talon/kit/subjects';
import { parseMcpPrincipal } from '@talon/kit/contracts';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import type { McpServer } from '@talon/proto';
import { McpServers, parseHostEntry, secretNamesOf } from '@talon/records/mcp';
import { normalizeHost, type DestinationRule } from './policy.ts';

export interface McpGrant {
  rules: DestinationRule[];
  secrets: ReadonlySet<string>;
}

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
  private readonly log: Logger;
  private servers: McpServers | undefined;
  private sub: Subscription | undefined;
  private readonly cache = new Map<string, { at: number; grant: McpGrant | { refused: string } }>();
  private readonly ttlMs: number;

  constructor(nc: NatsConnection, log: Logger, ttlMs = 30_000) {
    this.nc = nc;
    this.log = log;
    this.ttlMs = ttlMs;
  }

  async start(): Promise<void> {
    this.servers = await new McpServers(this.nc).open();
    this.sub = this.nc.subscribe(`$KV.${KV_BUCKETS.mcp}.>`, {
      callback: () => {
        if (this.cache.size > 0) this.cache.clear();
      },
    });
  }

  /** The grant of an `mcp:<name>` principal. */
  async grantFor(principal: string): Promise<McpGrant | { refused: string }> {
    const name = parseMcpPrincipal(principal);
    if (!name) return { refused: 'bad_mcp_principal' };
    const hit = this.cache.get(principal);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.grant;
    if (!this.servers) return { refused: 'mcp_registry_unavailable' };
    let grant: McpGrant | { refused: string };
    try {
      grant = mcpGrantOf(principal, (await this.servers.get(name))?.server);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'MCP registry unavailable');
      return { refused: 'mcp_registry_unavailable' };
    }
    this.cache.set(principal, { at: Date.now(), grant });
    return grant;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
