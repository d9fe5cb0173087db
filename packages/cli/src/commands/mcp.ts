// `talon mcp add|list|tools|approve|revoke|rm`: remote MCP servers whose tools the model
// may use. Records live in talon_mcp (written here, as the admin identity, after the
// checks of @talon/records/mcp); egress lets `mcp:<name>` reach only the record's hosts.
// Listing a server's tools is asked of an orchestrator over NATS (talon.mcp.tools): it
// is the MCP client, and every byte goes through egress. An approval pins each tool to
// the hash of what the operator was shown; a tool that changes is not offered again
// until it is approved again.
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { MCP_SERVER_NAME_RULE } from '@talon/kit/contracts';
import type { NatsConnection } from '@talon/kit/nats';
import { SUBJECTS } from '@talon/kit/subjects';
import { McpToolsReply, McpToolsRequest, type McpServer, type McpToolInfo } from '@talon/proto';
import {
  approveTools,
  checkServer,
  checkServerName,
  checkServerUrl,
  checkTransport,
  hostEntry,
  McpRuleError,
  McpServers,
  mcpToolName,
  parseHeaderOption,
  reviewTools,
  revokeTools,
  secretNamesOf,
} from '@talon/records/mcp';
import { CliError, withAdminNats } from '../context.ts';

/** Rule violations become CLI errors (exit 1) with the rule's own message. */
function rule<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof McpRuleError) throw new CliError(err.message);
    throw err;
  }
}

export interface AddOptions {
  url: string;
  header: string[];
  transport: string;
}

/** The record `add` writes; throws McpRuleError naming what is wrong. Pure. */
export function serverFromOptions(name: string, o: AddOptions, now: number, by: string): McpServer {
  const url = checkServerUrl(o.url.trim());
  return checkServer({
    name: checkServerName(name),
    url: url.href,
    headers: o.header.map(parseHeaderOption),
    hosts: [hostEntry(url)],
    tools: [],
    transport: checkTransport(o.transport),
    createdAtMs: now,
    updatedAtMs: now,
    createdBy: by,
  });
}

async function servers(nc: NatsConnection): Promise<McpServers> {
  return new McpServers(nc).open();
}

async function mustGet(nc: NatsConnection, name: string): Promise<{ server: McpServer; revision: number }> {
  const cur = await (await servers(nc)).get(name);
  if (!cur) throw new CliError(`no MCP server ${name} (see \`talon mcp list\`)`);
  return cur;
}

export async function addServer(nc: NatsConnection, s: McpServer): Promise<void> {
  if (!(await (await servers(nc)).create(s)))
    throw new CliError(
      `an MCP server named ${s.name} exists already: remove it first with \`talon mcp rm ${s.name}\`, or pick another name`,
    );
}

/** The server's tools as an orchestrator lists them now, through egress. */
export async function listedTools(nc: NatsConnection, name: string, timeoutMs = 30_000): Promise<McpToolInfo[]> {
  let data: Uint8Array;
  try {
    data = (await nc.request(SUBJECTS.mcpTools, McpToolsRequest.encode({ server: name }).finish(), { timeout: timeoutMs })).data;
  } catch (err) {
    const e = err as Error & { isNoResponders?: () => boolean };
    if (typeof e.isNoResponders === 'function' && e.isNoResponders())
      throw new CliError('no orchestrator is answering (is Talon running with its orchestrator?); try again shortly', 69);
    throw new CliError(`no answer from an orchestrator within ${timeoutMs} ms; try again`, 69);
  }
  const reply = McpToolsReply.decode(data);
  if (reply.errorCode) {
    const hint =
      reply.errorCode === 'host_not_allowed' || reply.errorCode === 'policy_denied'
        ? ' (egress refused it: see `talon egress audit --principal mcp:' + name + '`)'
        : '';
    throw new CliError(`listing the tools of ${name} failed (${reply.errorCode}): ${reply.errorMessage}${hint}`);
  }
  return reply.tools;
}

async function changeServer(nc: NatsConnection, name: string, change: (s: McpServer) => McpServer): Promise<McpServer> {
  const store = await servers(nc);
  for (let i = 0; i < 5; i++) {
    const cur = await store.get(name);
    if (!cur) throw new CliError(`no MCP server ${name} (see \`talon mcp list\`)`);
    const next = rule(() => change(cur.server));
    if (await store.update(next, cur.revision)) return next;
  }
  throw new CliError(`MCP server ${name} kept changing while it was updated; try again`);
}

/** Approves one tool or every tool the server lists now, each pinned to its current hash. */
export async function approveServerTools(
  nc: NatsConnection,
  name: string,
  o: { tool?: string; requiresUserApproval: boolean; now?: number; by: string },
): Promise<{ server: McpServer; listed: McpToolInfo[] }> {
  await mustGet(nc, name);
  const listed = await listedTools(nc, name);
  const server = await changeServer(nc, name, (s) =>
    approveTools(s, listed, {
      ...(o.tool !== undefined ? { tool: o.tool } : {}),
      requiresUserApproval: o.requiresUserApproval,
      now: o.now ?? Date.now(),
      by: o.by,
    }),
  );
  return { server, listed };
}

function oneLine(s: string, max = 160): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length <= max ? t : `${t.slice(0, max - 3)}...`;
}

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

export function registerMcp(program: Command): void {
  const mcp = program
    .command('mcp')
    .description(
      'tools from remote MCP servers (Streamable HTTP, or SSE for older servers): every byte through egress as mcp:<name>; a tool is offered only once approved, and again only after approval when it changes',
    )
    .addHelpText(
      'after',
      `
Local (stdio) MCP servers are refused: Talon has no confinement for a local process
equal to the sandbox's (a network namespace whose only route is egress).

Credentials: store them in the vault, bound to the server's host and principal, and
pass them as placeholders that egress fills:
  printf %s "$TOKEN" | talon secrets set docs_token --host mcp.example.com --principal mcp:docs
  talon mcp add docs --url https://mcp.example.com/mcp --header 'Authorization: Bearer {{secret:docs_token}}'
  talon mcp tools docs        # what the server offers, with each tool's description and hash
  talon mcp approve docs      # or --tool NAME; --require-approval: each call asks the user`,
    );
  mcp
    .command('add')
    .description(
      'register a remote MCP server; mcp:<name> may then reach its host through egress (no tool is offered before `talon mcp approve`)',
    )
    .argument('<name>', MCP_SERVER_NAME_RULE)
    .requiredOption('--url <url>', 'the server endpoint, http(s), e.g. https://mcp.example.com/mcp')
    .option(
      '--header <header>',
      "a header sent with every request, 'Name: value'; credentials only as {{secret:NAME}} placeholders (repeatable)",
      collect,
      [],
    )
    .option(
      '--transport <kind>',
      'streamable-http, or sse for older servers (a server that refuses Streamable HTTP is tried over SSE)',
      'streamable-http',
    )
    .action(async (name: string, o: AddOptions) => {
      const s = rule(() => serverFromOptions(name, o, Date.now(), `cli:${userInfo().username}`));
      await withAdminNats((nc) => addServer(nc, s));
      console.log(`MCP server ${s.name} added: ${s.url} (${s.transport}); mcp:${s.name} may reach ${s.hosts.join(', ')} through egress.`);
      for (const secret of secretNamesOf(s.headers))
        console.log(
          `Its headers use the secret ${secret}: bind it with \`talon secrets set ${secret} --host ${new URL(s.url).hostname} --principal mcp:${s.name}\` if you have not.`,
        );
      console.log(`No tool is offered yet. Review them with \`talon mcp tools ${s.name}\`, then \`talon mcp approve ${s.name}\`.`);
    });
  mcp
    .command('list')
    .description('registered MCP servers: URL, hosts, headers (placeholders only) and approved tools')
    .action(async () => {
      const all = await withAdminNats(async (nc) => (await servers(nc)).list());
      if (all.length === 0) {
        console.log('No MCP servers. Add one with: talon mcp add NAME --url https://… [--header "Authorization: Bearer {{secret:NAME}}"]');
        return;
      }
      for (const s of all.sort((a, b) => a.name.localeCompare(b.name))) {
        console.log(`${s.name}  ${s.url}  transport=${s.transport || 'streamable-http'}  hosts=${s.hosts.join(',')}`);
        for (const h of s.headers) console.log(`  header ${h.name}: ${h.value}`);
        if (s.tools.length === 0) console.log('  no approved tools');
        for (const t of s.tools)
          console.log(
            `  approved ${t.name}  sha256=${t.sha256.slice(0, 16)}…${t.requiresUserApproval ? '  each call asks the user' : ''}  by ${t.approvedBy} ${new Date(t.approvedAtMs).toISOString()}`,
          );
      }
    });
  mcp
    .command('tools')
    .description(
      "the tools the server lists now (through egress): name, the model's name for it, approval state, hash, description, input schema",
    )
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const { server, listed } = await withAdminNats(async (nc) => ({
        server: (await mustGet(nc, name)).server,
        listed: await listedTools(nc, name),
      }));
      const review = reviewTools(server.tools, listed);
      if (o.json) {
        const rows = listed.map((t, i) => ({
          name: t.name,
          model_name: mcpToolName(name, t.name),
          state: review.tools[i]!.standing,
          sha256: t.sha256,
          description: t.description,
          input_schema: JSON.parse(t.inputSchemaJson || '{}') as unknown,
        }));
        console.log(JSON.stringify({ server: name, tools: rows, removed: review.removed }, null, 2));
        return;
      }
      if (listed.length === 0) console.log(`${name} lists no tools.`);
      listed.forEach((t, i) => {
        const state = review.tools[i]!.standing;
        const label =
          state === 'changed' ? 'CHANGED since approval: not offered until approved again' : state === 'new' ? 'not approved' : 'approved';
        console.log(`${t.name}  (model: ${mcpToolName(name, t.name)})  ${label}`);
        console.log(`  sha256: ${t.sha256}`);
        console.log(`  description: ${t.description.replace(/\s*\n\s*/g, '\n    ') || '(none)'}`);
        console.log(`  input schema: ${t.inputSchemaJson}`);
      });
      for (const r of review.removed) console.log(`${r}  approved, but no longer listed by the server`);
    });
  mcp
    .command('approve')
    .description(
      'offer the tools the server lists now (or one, --tool), each pinned to its current hash; a tool that changes later is not offered until approved again',
    )
    .argument('<name>')
    .option('--tool <tool>', 'approve only this tool (default: every tool the server lists now)')
    .option('--require-approval', "each call of the approved tools waits for the user's approval")
    .action(async (name: string, o: { tool?: string; requireApproval?: boolean }) => {
      const { listed } = await withAdminNats((nc) =>
        approveServerTools(nc, name, {
          ...(o.tool !== undefined ? { tool: o.tool } : {}),
          requiresUserApproval: o.requireApproval === true,
          by: `cli:${userInfo().username}`,
        }),
      );
      for (const t of listed.filter((x) => o.tool === undefined || x.name === o.tool))
        console.log(`approved ${t.name}  sha256=${t.sha256}\n  ${oneLine(t.description) || '(no description)'}`);
      console.log(`The approved tools of ${name} are offered from the next turn on.`);
    });
  mcp
    .command('revoke')
    .description('stop offering a tool (--tool) or every tool of a server; the server stays registered')
    .argument('<name>')
    .option('--tool <tool>', 'revoke only this tool')
    .action(async (name: string, o: { tool?: string }) => {
      await withAdminNats((nc) =>
        changeServer(nc, name, (s) => revokeTools(s, { ...(o.tool !== undefined ? { tool: o.tool } : {}), now: Date.now() })),
      );
      console.log(o.tool ? `Tool ${o.tool} of ${name} is no longer offered.` : `No tool of ${name} is offered any more.`);
    });
  mcp
    .command('rm')
    .description('remove a server: its tools are no longer offered and egress no longer lets mcp:<name> out')
    .argument('<name>')
    .action(async (name: string) => {
      await withAdminNats(async (nc) => {
        await mustGet(nc, name);
        await (await servers(nc)).remove(name);
      });
      console.log(`MCP server ${name} removed.`);
    });
}
