import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { McpServer } from '@talon/proto';
import { mcpGrantOf } from './mcp-grants.ts';
import { decideDestination } from './policy.ts';

const rec: McpServer = {
  name: 'docs',
  url: 'https://MCP.example.com/mcp',
  headers: [
    { name: 'Authorization', value: 'Bearer {{secret:docs_token}}' },
    { name: 'X-Client', value: 'talon' },
  ],
  hosts: ['mcp.example.com:443'],
  tools: [],
  transport: 'streamable-http',
  createdAtMs: 1,
  updatedAtMs: 1,
  createdBy: 'cli:op',
};

describe('MCP grants', () => {
  it('allows mcp:<name> exactly its hosts, and only the secrets its headers name', () => {
    const g = mcpGrantOf('mcp:docs', rec);
    assert.ok(!('refused' in g));
    assert.deepEqual([...g.secrets], ['docs_token']);
    const ask = (host: string, port: number, method = 'POST', principal = 'mcp:docs') =>
      decideDestination(g.rules, { principal, method, scheme: 'https:', host, port }).reason;
    assert.equal(ask('mcp.example.com', 443), 'allowed');
    assert.equal(ask('mcp.example.com', 443, 'DELETE'), 'allowed');
    assert.equal(ask('mcp.example.com', 443, 'PUT'), 'method_not_allowed');
    assert.equal(ask('mcp.example.com', 8443), 'port_not_allowed');
    assert.equal(ask('api.openai.com', 443), 'host_not_allowed');
    assert.equal(ask('mcp.example.com', 443, 'POST', 'mcp:other'), 'host_not_allowed');
  });

  it('refuses an unregistered server', () => {
    assert.deepEqual(mcpGrantOf('mcp:docs', undefined), { refused: 'mcp_not_registered' });
  });
});
