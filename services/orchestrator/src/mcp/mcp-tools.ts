// An offered MCP tool as a tool of the agent loop: the model calls mcp_<server>_<tool>
// with arguments that passed the tool's schema; the call goes through egress as
// `mcp:<server>`, for the conversation's user. Before it runs, the server's current
// listing of the tool is checked against the approved hash again: a tool changed
// between the offer and the call is not run. The text returned becomes an untrusted
// block in the agent loop, and is recorded and audited like every tool call.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { TalonError } from '@talon/kit/errors';
import { ToolError, type Tool } from '../tools/registry.ts';
import type { OfferedMcpTool } from './catalog.ts';
import type { McpConnector } from './session.ts';

/** The text of a tool result: text parts as they are, other content named, not inlined. Pure. */
export function resultText(r: Pick<CallToolResult, 'content' | 'structuredContent'>): string {
  const parts: string[] = [];
  for (const c of r.content ?? []) {
    switch (c.type) {
      case 'text':
        parts.push(c.text);
        break;
      case 'image':
      case 'audio':
        parts.push(`[${c.type} ${c.mimeType}, ${Math.floor((c.data.length * 3) / 4)} bytes, not shown]`);
        break;
      case 'resource':
        parts.push(
          'text' in c.resource && typeof c.resource.text === 'string' ? c.resource.text : `[resource ${c.resource.uri}, not shown]`,
        );
        break;
      case 'resource_link':
        parts.push(`[resource link ${c.name}: ${c.uri}]`);
        break;
    }
  }
  if (parts.length === 0 && r.structuredContent !== undefined) parts.push(JSON.stringify(r.structuredContent));
  return parts.join('\n');
}

export function mcpTool(t: OfferedMcpTool, connector: Pick<McpConnector, 'with'>, onChanged?: () => void): Tool {
  return {
    name: t.toolName,
    description: t.description,
    parameters: t.parameters,
    // Approvals, records and audit name the server (`mcp:<server>`) and the approved definition (its hash, cut).
    meta: { skill: `mcp:${t.server.name}`, version: t.sha256.slice(0, 12), requiresApproval: t.requiresApproval },
    async handler(args, ctx) {
      try {
        return await connector.with(
          t.server,
          { user: ctx.conversation.userId, signal: ctx.signal, timeoutMs: Math.max(1, ctx.deadline - Date.now()) },
          async (s) => {
            const now = (await s.listTools()).find((x) => x.name === t.tool);
            if (!now || now.sha256 !== t.sha256) {
              onChanged?.();
              throw new ToolError(
                `the tool ${t.tool} of MCP server ${t.server.name} ${now ? 'changed' : 'disappeared'} since the operator approved it; it was not run`,
                'mcp_tool_changed',
              );
            }
            const res = await s.callTool(t.tool, args);
            const text = resultText(res);
            if (res.isError) throw new ToolError(`the MCP tool ${t.tool} failed: ${text}`, 'mcp_tool_error');
            return text;
          },
        );
      } catch (err) {
        if (err instanceof ToolError) throw err;
        // Egress refusals and transport failures keep their stable code for records and audit.
        if (err instanceof TalonError) throw new ToolError(err.message, `mcp_${err.code}`);
        throw err;
      }
    },
  };
}
