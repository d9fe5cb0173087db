import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Role, type AgentProfile, type InboundMessage } from '@talon/proto';
import { inMemoryScope, memoryConversation, offersMcpTool, offersSkill, resolveAgent, routeInbound, type RouteInput } from './agents.ts';

function profile(name: string, over: Partial<AgentProfile> = {}): AgentProfile {
  return {
    name,
    systemPrompt: `You are ${name}.`,
    model: 'fast',
    failover: [],
    skills: [],
    allSkills: false,
    mcp: [],
    allMcp: false,
    memorySharedWith: '',
    routes: [],
    createdAtMs: 0,
    updatedAtMs: 0,
    createdBy: '',
    ...over,
  };
}

const agents = [
  profile('research', { routes: [{ kind: 'channel', value: 'slack' }] }),
  profile('helper', {
    routes: [
      { kind: 'user', value: 'alice' },
      { kind: 'channel', value: 'telegram' },
    ],
  }),
  profile('coder', { routes: [{ kind: 'channel', value: 'telegram' }], memorySharedWith: 'research' }),
];
const base: RouteInput = { channel: 'api', user: 'bob', text: 'hello', requestedModel: '', agent: '' };

describe('resolveAgent: which agent answers a turn', () => {
  const cases: Array<[string, Partial<RouteInput>, string | undefined, string, string]> = [
    // [what, input, agent, text after, by]
    ['no rule matches: the default agent', {}, undefined, 'hello', 'default'],
    ['@name picks the agent and is stripped', { text: '@coder write a test' }, 'coder', 'write a test', 'mention'],
    ['@name followed by punctuation', { text: '  @research: what is new?' }, 'research', 'what is new?', 'mention'],
    ['@name alone', { text: '@helper' }, 'helper', '', 'mention'],
    ['an unknown @name is left in the text', { text: '@nobody hi' }, undefined, '@nobody hi', 'default'],
    ['@name inside a word is no mention', { text: '@coders hi' }, undefined, '@coders hi', 'default'],
    ['@name mid-text is no mention', { text: 'ask @coder' }, undefined, 'ask @coder', 'default'],
    ['@name beats routes', { text: '@research hi', user: 'alice', channel: 'telegram' }, 'research', 'hi', 'mention'],
    ['model names an agent', { requestedModel: 'research' }, 'research', 'hello', 'model'],
    ['model names a model: routes decide', { requestedModel: 'fast', channel: 'slack' }, 'research', 'hello', 'channel'],
    ['@name beats the model', { requestedModel: 'research', text: '@coder x' }, 'coder', 'x', 'mention'],
    ['a user route beats a channel route', { user: 'alice', channel: 'slack' }, 'helper', 'hello', 'user'],
    ['channel route', { channel: 'slack' }, 'research', 'hello', 'channel'],
    ['two channel routes: the first by name', { channel: 'telegram' }, 'coder', 'hello', 'channel'],
    ['a named agent (routine) beats everything', { agent: 'research', text: '@coder x', user: 'alice' }, 'research', '@coder x', 'named'],
    ['a named agent that is gone: the default', { agent: 'gone' }, undefined, 'hello', 'default'],
  ];
  for (const [what, input, agent, text, by] of cases) {
    it(what, () => {
      const r = resolveAgent(agents, { ...base, ...input });
      assert.equal(r.agent?.name, agent);
      assert.equal(r.text, text);
      assert.equal(r.by, by);
    });
  }

  it('with no profiles, always the default and the text unchanged', () => {
    assert.deepEqual(resolveAgent([], { ...base, text: '@coder hi', requestedModel: 'coder' }), {
      agent: undefined,
      text: '@coder hi',
      by: 'default',
    });
  });
});

describe('routeInbound: the inbound message as the agent answers it', () => {
  const inbound: InboundMessage = {
    id: 'm1',
    conversation: { userId: 'bob', channel: 'webhook', threadId: 't1' },
    messages: [
      { role: Role.ROLE_USER, content: '@helper earlier', name: '' },
      { role: Role.ROLE_ASSISTANT, content: 'ok', name: '' },
      { role: Role.ROLE_USER, content: '@coder now', name: '' },
    ],
    stream: false,
    reply: undefined,
    model: '',
    receivedAtMs: 0,
    redacted: [],
  };

  it('sets agent and memory scope, strips only the new user message', () => {
    const r = routeInbound(agents, inbound);
    assert.equal(r.inbound.agent, 'coder');
    assert.equal(r.inbound.memoryScope, 'research', 'coder shares research’s memory');
    assert.equal(r.inbound.messages[2]!.content, 'now');
    assert.equal(r.inbound.messages[0]!.content, '@helper earlier');
    assert.equal(inbound.messages[2]!.content, '@coder now', 'the original is not changed');
  });

  it('an agent with its own memory is its own scope; the default agent has none', () => {
    const own = routeInbound(agents, { ...inbound, messages: [{ role: Role.ROLE_USER, content: '@helper x', name: '' }] });
    assert.equal(own.inbound.memoryScope, 'helper');
    const none = routeInbound(agents, { ...inbound, messages: [{ role: Role.ROLE_USER, content: 'x', name: '' }] });
    assert.equal(none.inbound.agent, undefined);
    assert.equal(none.inbound.memoryScope, undefined);
  });
});

describe('memory scope and tool filters', () => {
  it('keeps a scope’s turns in the thread suffixed with it', () => {
    const conv = { userId: 'u', channel: 'api', threadId: 'chat:1' };
    assert.deepEqual(memoryConversation(conv, ''), conv);
    assert.equal(memoryConversation(conv, 'research').threadId, 'chat:1+agent:research');
  });

  it('recalls only the scope’s turns, and the user’s documents', () => {
    const turn = (threadId: string) => ({ kind: 'turn', threadId });
    assert.ok(inMemoryScope(turn('t+agent:research'), 'research'));
    assert.ok(!inMemoryScope(turn('t+agent:researcher'), 'research'));
    assert.ok(!inMemoryScope(turn('t'), 'research'));
    assert.ok(inMemoryScope(turn('t'), ''));
    assert.ok(!inMemoryScope(turn('t+agent:research'), ''), 'the default agent does not read an agent’s memory');
    assert.ok(inMemoryScope({ kind: 'document', threadId: '' }, 'research'));
  });

  it('offers skills and MCP tools by the agent’s lists; no agent: all', () => {
    const a = profile('a', { skills: ['echo'], mcp: ['docs', 'wiki/search'] });
    assert.ok(offersSkill(undefined, 'anything'));
    assert.ok(offersSkill(a, 'echo'));
    assert.ok(!offersSkill(a, 'fetch'));
    assert.ok(offersSkill(profile('b', { allSkills: true }), 'fetch'));
    assert.ok(!offersSkill(profile('c'), 'echo'), 'empty list: none');
    assert.ok(offersMcpTool(a, 'docs', 'anything'));
    assert.ok(offersMcpTool(a, 'wiki', 'search'));
    assert.ok(!offersMcpTool(a, 'wiki', 'delete'));
    assert.ok(offersMcpTool(profile('d', { allMcp: true }), 'wiki', 'delete'));
    assert.ok(!offersMcpTool(profile('e'), 'docs', 'x'));
  });
});
