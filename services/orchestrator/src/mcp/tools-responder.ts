// Answers `talon mcp tools NAME` (NATS request talon.mcp.tools, queue group: one
// orchestrator replica answers): lists a registered server's tools through egress, as
// `mcp:<server>`, with the hash of each so the operator approves exactly what they
// read. The admin CLI has no route to egress in a cluster; the orchestrator is the
// MCP client. Never throws: failures are a reply with a stable code.
import { InFlight } from '@talon/kit/lifecycle';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { ORCHESTRATOR_QUEUE, SUBJECTS } from '@talon/kit/subjects';
import { McpToolsReply, McpToolsRequest, type McpServer } from '@talon/proto';
import type { McpConnector } from './session.ts';

export async function answerMcpTools(
  data: Uint8Array,
  server: (name: string) => Promise<McpServer | undefined>,
  connector: Pick<McpConnector, 'with'>,
): Promise<McpToolsReply> {
  const fail = (code: string, message: string): McpToolsReply => ({ tools: [], errorCode: code, errorMessage: message });
  let req: McpToolsRequest;
  try {
    req = McpToolsRequest.decode(data);
  } catch {
    return fail('invalid_argument', 'the request is not a valid talon.mcp.v1.McpToolsRequest');
  }
  try {
    const s = await server(req.server);
    if (!s) return fail('not_found', `no MCP server ${req.server.slice(0, 40)} is registered (see \`talon mcp list\`)`);
    const tools = await connector.with(s, {}, (session) => session.listTools());
    return {
      tools: tools.map((t) => ({
        name: t.name,
        description: t.description,
        inputSchemaJson: JSON.stringify(t.inputSchema),
        sha256: t.sha256,
      })),
      errorCode: '',
      errorMessage: '',
    };
  } catch (err) {
    const te = err instanceof TalonError ? err : new TalonError('internal', 'listing the tools failed inside the orchestrator');
    return fail(te.code, te.message);
  }
}

export class McpToolsResponder {
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private readonly server: (name: string) => Promise<McpServer | undefined>;
  private readonly connector: Pick<McpConnector, 'with'>;
  private readonly inFlight = new InFlight();
  private sub: ReturnType<NatsConnection['subscribe']> | undefined;

  constructor(o: {
    nc: NatsConnection;
    log: Logger;
    server: (name: string) => Promise<McpServer | undefined>;
    connector: Pick<McpConnector, 'with'>;
  }) {
    this.nc = o.nc;
    this.log = o.log;
    this.server = o.server;
    this.connector = o.connector;
  }

  start(): void {
    if (this.sub) return;
    this.sub = this.nc.subscribe(SUBJECTS.mcpTools, {
      queue: ORCHESTRATOR_QUEUE,
      callback: (_err, m) => {
        if (!m.reply) return;
        void this.inFlight.track(async () => {
          const started = Date.now();
          const reply = await answerMcpTools(m.data, this.server, this.connector);
          try {
            m.respond(McpToolsReply.encode(reply).finish());
          } catch (e) {
            this.log.warn({ err: (e as Error).message }, 'could not answer an MCP tools request');
          }
          this.log.info({ outcome: reply.errorCode || 'ok', tools: reply.tools.length, ms: Date.now() - started }, 'MCP tools listed');
        });
      },
    });
  }

  async stop(): Promise<void> {
    await this.sub?.drain().catch(() => undefined);
    await this.inFlight.idle();
  }
}
