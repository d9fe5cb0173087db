// One conversation with a remote MCP server through egress, with the official SDK:
// Streamable HTTP, or SSE for older servers (the record says so, or the server
// refuses Streamable HTTP's POST with 404/405 and SSE is tried once). A session
// lives for one operation (list the tools; re-check and call one) and is closed.
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { EgressRefusal, type EgressClient } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import type { McpServer } from '@talon/proto';
import { toolHash } from '@talon/records/mcp';
import { egressFetch } from './egress-fetch.ts';

/** A tool as the server lists it now, with the hash an approval pins. */
export interface McpListedTool {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
  sha256: string;
}

export interface McpSession {
  listTools(): Promise<McpListedTool[]>;
  callTool(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
}

/**
 * The SDK, loaded on the first session: it brings zod and ajv (≈600 modules), which an
 * orchestrator with no MCP server never needs (idle footprint, docs/architecture.md §11).
 */
let sdkModules:
  | Promise<
      [
        typeof import('@modelcontextprotocol/sdk/client/index.js'),
        typeof import('@modelcontextprotocol/sdk/client/sse.js'),
        typeof import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
      ]
    >
  | undefined;
function loadSdk(): NonNullable<typeof sdkModules> {
  sdkModules ??= Promise.all([
    import('@modelcontextprotocol/sdk/client/index.js'),
    import('@modelcontextprotocol/sdk/client/sse.js'),
    import('@modelcontextprotocol/sdk/client/streamableHttp.js'),
  ]);
  return sdkModules;
}

/** At most this many pages of tools/list (a server that never ends its cursor). */
const MAX_PAGES = 20;

/** The egress refusal behind an SDK error, if there is one. */
function refusalIn(err: unknown): EgressRefusal | undefined {
  for (let e: unknown = err, i = 0; e && i < 5; i++, e = (e as { cause?: unknown }).cause) if (e instanceof EgressRefusal) return e;
  return undefined;
}

/** Any failure talking to a server as a TalonError: egress's refusal as it is, else `unavailable` naming the server. */
export function mcpFailure(server: string, err: unknown): TalonError {
  const refusal = refusalIn(err);
  if (refusal) return refusal;
  if (err instanceof TalonError) return err;
  const msg = (err as Error)?.message ?? String(err);
  return new TalonError('unavailable', `MCP server ${server}: ${msg.slice(0, 300)}`, { cause: err });
}

export class McpConnector {
  private readonly egress: Pick<EgressClient, 'request'>;
  private readonly timeoutMs: number;

  constructor(o: { egress: Pick<EgressClient, 'request'>; timeoutMs: number }) {
    this.egress = o.egress;
    this.timeoutMs = o.timeoutMs;
  }

  private async transport(s: McpServer, kind: string, user: string | undefined, timeoutMs: number): Promise<Transport> {
    const [, { SSEClientTransport }, { StreamableHTTPClientTransport }] = await loadSdk();
    const headers = Object.fromEntries(s.headers.map((h) => [h.name, h.value]));
    const fetch = egressFetch(this.egress, { server: s.name, timeoutMs, noEventStream: kind !== 'sse', ...(user ? { user } : {}) });
    const url = new URL(s.url);
    return kind === 'sse'
      ? new SSEClientTransport(url, { fetch, requestInit: { headers } })
      : new StreamableHTTPClientTransport(url, { fetch, requestInit: { headers } });
  }

  /** Opens a session, runs `fn`, closes it. The SDK's failures are TalonErrors (egress refusals keep their reason). */
  async with<T>(
    s: McpServer,
    o: { user?: string; signal?: AbortSignal; timeoutMs?: number },
    fn: (session: McpSession) => Promise<T>,
  ): Promise<T> {
    const timeout = Math.max(1, o.timeoutMs ?? this.timeoutMs);
    const opts = { timeout, ...(o.signal ? { signal: o.signal } : {}) };
    const [{ Client }, , { StreamableHTTPClientTransport, StreamableHTTPError }] = await loadSdk();
    const client = new Client({ name: 'talon', version: '0.1.0' }, { capabilities: {} });
    let transport = await this.transport(s, s.transport, o.user, timeout);
    // The SDK's failures become TalonErrors; `fn`'s own errors pass through as they are.
    const sdk = async <R>(p: () => Promise<R>): Promise<R> => {
      try {
        return await p();
      } catch (err) {
        throw mcpFailure(s.name, err);
      }
    };
    try {
      await sdk(async () => {
        try {
          await client.connect(transport, opts);
        } catch (err) {
          // An older server without Streamable HTTP answers its POST with 404 or 405: try its SSE endpoint once.
          const code = err instanceof StreamableHTTPError ? err.code : undefined;
          if (s.transport === 'sse' || (code !== 404 && code !== 405)) throw err;
          await transport.close().catch(() => undefined);
          transport = await this.transport(s, 'sse', o.user, timeout);
          await client.connect(transport, opts);
        }
      });
      return await fn({
        listTools: () =>
          sdk(async () => {
            const out: McpListedTool[] = [];
            let cursor: string | undefined;
            for (let page = 0; page < MAX_PAGES; page++) {
              const r = await client.listTools(cursor ? { cursor } : {}, opts);
              for (const t of r.tools) {
                const inputSchema = t.inputSchema as Record<string, unknown>;
                const info = { name: t.name, description: t.description ?? '', inputSchema };
                out.push({ ...info, sha256: toolHash(info) });
              }
              cursor = r.nextCursor;
              if (!cursor) break;
            }
            return out;
          }),
        callTool: (name, args) => sdk(async () => (await client.callTool({ name, arguments: args }, undefined, opts)) as CallToolResult),
      });
    } finally {
      // Ends the server's session (Streamable HTTP: DELETE) when it keeps one, then closes.
      if (transport instanceof StreamableHTTPClientTransport && transport.sessionId)
        await transport.terminateSession().catch(() => undefined);
      await client.close().catch(() => undefined);
    }
  }
}
