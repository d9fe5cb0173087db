// Added latency of an MCP tool call through egress, against calling the same fake MCP
// server directly, in the same run. One call is what the orchestrator does for a tool
// call (services/orchestrator/src/mcp/session.ts): open a session (initialize, the
// initialized notification), list the tools (the tool-poisoning re-check), call the tool,
// close — over Streamable HTTP with the official SDK. Through egress: as `mcp:bench`,
// with the bearer token filled by egress from the vault; directly: the same requests
// with the token written in by this process. Rounds alternate between the two paths.
//
//   npm run bench:mcp -- [--calls 200] [--rounds 4]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { benchArgs } from './args.ts';
import { request } from 'undici';
import { EgressClient, type EgressRequest, type EgressResponse } from '@talon/kit/egress';
import { McpServers } from '@talon/records/mcp';
import { startFakeMcpServer, startTestPlatform } from '@talon/testkit';
import { McpConnector } from '../services/orchestrator/src/mcp/session.ts';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({ options: { calls: { type: 'string', default: '200' }, rounds: { type: 'string', default: '4' } } });
const CALLS = Number(values.calls);
const ROUNDS = Number(values.rounds);
const TOKEN = `bench-mcp-token-${process.pid}-0123456789abcdef`;
const ROOT = join(import.meta.dirname, '..');

const fake = await startFakeMcpServer({ token: TOKEN });
const tp = await startTestPlatform({
  llm: false,
  services: ['vault', 'egress'],
  env: {
    TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${fake.port}`,
    TALON_VAULT_PASSPHRASE: 'bench mcp passphrase, not a secret',
  },
});
const egress = new EgressClient({ proxyUrl: `https://127.0.0.1:${tp.ports.egressProxy}`, tls: tp.platform.tls('orchestrator') });
try {
  const set = spawnSync(
    process.execPath,
    [
      join(ROOT, 'packages/cli/src/bin.ts'),
      'secrets',
      'set',
      'bench_mcp_token',
      '--host',
      `127.0.0.1:${fake.port}`,
      '--principal',
      'mcp:bench',
    ],
    { input: `${TOKEN}\n`, encoding: 'utf8', env: { ...process.env, TALON_HOME: tp.home, VAULT_GRPC_PORT: String(tp.ports.grpc.vault) } },
  );
  if (set.status !== 0) throw new Error(`secrets set failed: ${set.stderr}`);
  await tp.egressCaughtUpWithVault();
  const now = Date.now();
  const server = {
    name: 'bench',
    url: fake.url,
    headers: [{ name: 'Authorization', value: 'Bearer {{secret:bench_mcp_token}}' }],
    hosts: [`127.0.0.1:${fake.port}`],
    tools: [],
    transport: 'streamable-http',
    createdAtMs: now,
    updatedAtMs: now,
    createdBy: 'bench',
  };
  await (await new McpServers(await tp.admin()).open()).create(server);

  // The direct path: the same requests straight to the server, the token filled in here.
  const direct = {
    async request(r: EgressRequest): Promise<EgressResponse> {
      const headers = Object.fromEntries(
        Object.entries(r.headers ?? {})
          .filter(([k]) => k !== 'x-talon-mcp')
          .map(([k, v]) => [k, v.replace('{{secret:bench_mcp_token}}', TOKEN)]),
      );
      const res = await request(r.url, { method: r.method as 'POST', headers, body: r.body, ...(r.signal ? { signal: r.signal } : {}) });
      return { status: res.statusCode, headers: res.headers, body: res.body };
    },
  };
  const paths = {
    direct: new McpConnector({ egress: direct, timeoutMs: 10_000 }),
    egress: new McpConnector({ egress, timeoutMs: 10_000 }),
  };
  const once = async (c: McpConnector): Promise<number> => {
    const t0 = performance.now();
    const text = await c.with(server, {}, async (s) => {
      const listed = await s.listTools();
      if (!listed.some((t) => t.name === 'private_note')) throw new Error('the fake lists no private_note');
      const r = await s.callTool('private_note', {});
      return r.content[0]?.type === 'text' ? r.content[0].text : '';
    });
    if (text !== fake.note) throw new Error(`unexpected result ${JSON.stringify(text).slice(0, 80)} (was the token filled?)`);
    return performance.now() - t0;
  };
  // Warm both paths (connections, JIT, egress's secret cache).
  for (let i = 0; i < 20; i++) {
    await once(paths.direct);
    await once(paths.egress);
  }
  const samples: Record<'direct' | 'egress', number[]> = { direct: [], egress: [] };
  const requestsBefore = fake.requests.length;
  for (let round = 0; round < ROUNDS; round++)
    for (const which of round % 2 === 0 ? (['direct', 'egress'] as const) : (['egress', 'direct'] as const))
      for (let i = 0; i < Math.ceil(CALLS / ROUNDS); i++) samples[which].push(await once(paths[which]));
  const perCall = (fake.requests.length - requestsBefore) / (samples.direct.length + samples.egress.length);
  const d = summarize(samples.direct);
  const e = summarize(samples.egress);
  console.log(`MCP tool call through egress vs direct — ${machine()}`);
  console.log(`one call = a whole session (${fmt(perCall, 1)} HTTP requests: initialize, initialized, tools/list, tools/call)\n`);
  console.log(
    table(
      ['path', 'calls', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms'],
      [
        ['direct', d.n, fmt(d.p50), fmt(d.p90), fmt(d.p99), fmt(d.mean)],
        ['egress (mcp:bench, token from the vault)', e.n, fmt(e.p50), fmt(e.p90), fmt(e.p99), fmt(e.mean)],
        ['added by egress', '', fmt(e.p50 - d.p50), fmt(e.p90 - d.p90), fmt(e.p99 - d.p99), fmt(e.mean - d.mean)],
        ['added per HTTP request', '', fmt((e.p50 - d.p50) / perCall), '', '', fmt((e.mean - d.mean) / perCall)],
      ],
    ),
  );
} finally {
  await egress.close();
  await tp.stop();
  await fake.close();
}
