import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CHANNEL_REPLY_FILTER,
  NATS_USERS,
  STREAMS,
  SUBJECTS,
  isStreamSubject,
  natsPermissions,
  renderNatsConfig,
  replyDelivery,
} from './subjects.ts';

function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
const canPublish = (u: (typeof NATS_USERS)[number], subject: string) => natsPermissions(u).publish.allow.some((p) => matches(p, subject));

describe('per-service NATS permissions', () => {
  it('keeps each workload to its own subjects', () => {
    assert.ok(canPublish('gateway', 'talon.inbound.api'));
    assert.ok(!canPublish('gateway', 'talon.outbound.api.x'));
    assert.ok(canPublish('orchestrator', 'talon.outbound.api.x'));
    assert.ok(!canPublish('orchestrator', 'talon.inbound.api'));
    assert.ok(canPublish('orchestrator', SUBJECTS.inbound('routine')), 'routine firings');
    assert.ok(!canPublish('orchestrator', 'talon.inbound.telegram'));
    assert.ok(!canPublish('orchestrator', '$KV.talon_routines.routine.x'), 'routines are the operator’s');
    assert.ok(!canPublish('gateway', '$KV.talon_routine_runs.run.x.1'));
    assert.ok(canPublish('gateway', '$KV.talon_leases.lease.gateway.telegram.telegram_bot_token'), 'its own leases');
    assert.ok(!canPublish('gateway', '$KV.talon_leases.lease.orchestrator.x'), 'not another service’s');
    assert.ok(canPublish('gateway', '$KV.talon_channel_state.telegram.offset.telegram_bot_token'));
    // MCP servers: read by the orchestrator and egress, written by the operator only.
    assert.ok(canPublish('orchestrator', '$JS.API.DIRECT.GET.KV_talon_mcp.$KV.talon_mcp.server.docs'));
    assert.ok(canPublish('egress', '$JS.API.DIRECT.GET.KV_talon_mcp.$KV.talon_mcp.server.docs'));
    for (const u of ['orchestrator', 'egress', 'gateway', 'sandbox'] as const)
      assert.ok(!canPublish(u, '$KV.talon_mcp.server.docs'), `${u} cannot write MCP servers`);
    assert.ok(!canPublish('gateway', SUBJECTS.mcpTools), 'only the operator asks for MCP tool listings');
    // Agent profiles: read by the orchestrator and the gateway, written by the operator only.
    assert.ok(canPublish('orchestrator', '$JS.API.DIRECT.GET.KV_talon_agents.$KV.talon_agents.agent.research'));
    assert.ok(canPublish('gateway', '$JS.API.DIRECT.GET.KV_talon_agents.$KV.talon_agents.agent.research'));
    assert.ok(canPublish('admin', '$KV.talon_agents.agent.research'));
    for (const u of ['orchestrator', 'egress', 'gateway', 'sandbox'] as const)
      assert.ok(!canPublish(u, '$KV.talon_agents.agent.research'), `${u} cannot write agent profiles`);
    assert.ok(!canPublish('sandbox', 'talon.outbound.api.x'));
    assert.ok(!canPublish('egress', 'talon.inbound.api'));
    for (const u of NATS_USERS)
      if (u !== 'admin') assert.ok(!canPublish(u, '$JS.API.STREAM.DELETE.TALON_AUDIT'), `${u} cannot delete audit`);
  });

  it('renders a nats-server config with one nkey user per workload', () => {
    const users = Object.fromEntries(NATS_USERS.map((u, i) => [u, `UKEY${i}`])) as Record<(typeof NATS_USERS)[number], string>;
    const conf = renderNatsConfig({ host: '127.0.0.1', port: 4223, storeDir: '/tmp/js', users });
    for (const u of NATS_USERS) assert.match(conf, new RegExp(`# ${u}\\n\\s+nkey: "UKEY${NATS_USERS.indexOf(u)}"`));
    assert.match(conf, /jetstream \{\n {2}store_dir: "\/tmp\/js"/);
    assert.match(conf, /allow_responses: true/);
  });
});

describe('reply routes', () => {
  it('stores channel replies and sends API replies by core NATS, and names nothing else a route', () => {
    assert.equal(replyDelivery(SUBJECTS.channelReply('telegram')), 'durable');
    assert.equal(replyDelivery(SUBJECTS.apiReply('0a1b2c3d4e5f')), 'plain');
    assert.equal(replyDelivery(SUBJECTS.keptReply), 'kept');
    for (const bad of [
      'talon.outbound.x.y',
      'talon.outbound.api',
      'talon.outbound.api.a.b',
      'talon.outbound.kept.x',
      'talon.outbound.ch.>',
      'talon.inbound.api',
      '',
    ])
      assert.equal(replyDelivery(bad), undefined, bad);
  });

  it('keeps only the durable route in TALON_OUTBOUND', () => {
    assert.deepEqual(STREAMS.outbound.subjects, [CHANNEL_REPLY_FILTER]);
    assert.ok(matches(CHANNEL_REPLY_FILTER, SUBJECTS.channelReply('slack')));
    assert.ok(!matches(CHANNEL_REPLY_FILTER, SUBJECTS.apiReply('0a1b2c3d4e5f')));
  });

  it('accepts only the stream-chunk subjects the gateway names', () => {
    assert.ok(isStreamSubject(SUBJECTS.stream('0a1b2c3d4e5f', '3f2a1b6c-0000-4000-8000-000000000000')));
    for (const bad of ['talon.stream.a', 'talon.stream.a.b.c', 'talon.outbound.api.a', 'talon.stream.*.x'])
      assert.ok(!isStreamSubject(bad), bad);
  });
});
