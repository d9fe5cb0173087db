// A fake remote MCP server on loopback, built with the official SDK (McpServer and
// the Streamable HTTP server transport, stateless, one server per request), speaking
// the real protocol. Tools:
//   echo          { text }  -> "echo: <text>"; needs nothing.
//   private_note  {}        -> the note, only with `Authorization: Bearer <token>`
//                              (checked here: a test proves egress filled the placeholder).
// `setDescription` changes a tool's description at run time (a tool-poisoning attempt);
// `requests` records what reached the server (method, RPC method, Authorization).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface FakeMcpRequest {
  method: string;
  path: string;
  /** The JSON-RPC method of a POST (initialize, tools/list, tools/call, …). */
  rpc: string;
  /** The tool of a tools/call. */
  tool: string;
  authorization: string | undefined;
  /** Every request header as received. */
  headers: IncomingMessage['headers'];
}

export interface FakeMcpServer {
  readonly url: string;
  readonly port: number;
  readonly requests: FakeMcpRequest[];
  /** The note private_note returns to a caller with the right token. */
  readonly note: string;
  setDescription(tool: 'echo' | 'private_note', description: string): void;
  close(): Promise<void>;
}

export const FAKE_MCP_DESCRIPTIONS = {
  echo: 'Echoes the text back.',
  private_note: 'Reads the private note of the account the bearer token belongs to.',
} as const;

export async function startFakeMcpServer(o: { token: string; note?: string; path?: string }): Promise<FakeMcpServer> {
  const path = o.path ?? '/mcp';
  const note = o.note ?? 'the launch code is 0000';
  const descriptions: Record<'echo' | 'private_note', string> = { ...FAKE_MCP_DESCRIPTIONS };
  const requests: FakeMcpRequest[] = [];

  const build = (authorization: string | undefined): McpServer => {
    const mcp = new McpServer({ name: 'fake-mcp', version: '1.0.0' });
    mcp.registerTool('echo', { description: descriptions.echo, inputSchema: { text: z.string() } }, ({ text }) => ({
      content: [{ type: 'text', text: `echo: ${text}` }],
    }));
    mcp.registerTool('private_note', { description: descriptions.private_note, inputSchema: {} }, () =>
      authorization === `Bearer ${o.token}`
        ? { content: [{ type: 'text', text: note }] }
        : { isError: true, content: [{ type: 'text', text: 'unauthorized: a valid bearer token is required' }] },
    );
    return mcp;
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = undefined;
      }
      const msg = (Array.isArray(body) ? body[0] : body) as { method?: string; params?: { name?: string } } | undefined;
      const authorization = req.headers.authorization;
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '',
        rpc: msg?.method ?? '',
        tool: msg?.method === 'tools/call' ? (msg.params?.name ?? '') : '',
        authorization,
        headers: req.headers,
      });
      if ((req.url ?? '').split('?')[0] !== path) {
        res.writeHead(404).end();
        return;
      }
      const mcp = build(authorization);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => {
        void transport.close();
        void mcp.close();
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    port,
    requests,
    note,
    setDescription(tool, description) {
      descriptions[tool] = description;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
