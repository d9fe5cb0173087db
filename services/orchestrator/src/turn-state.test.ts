import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InboundMessage, OutboundMessage, ParkedTurn, ParkedTurnStatus, Role } from '@talon/proto';
import type { LoopProgress } from './agent-loop.ts';
import { answeredTurn, doneRecord, progressFromProto, progressToProto, storedStatus, turnKey } from './turn-state.ts';

const progress: LoopProgress = {
  messages: [
    { role: 'system', content: 'You are Talon.' },
    { role: 'user', content: 'convert 5 mi to km, then look up the weather' },
    {
      role: 'assistant',
      content: 'Let me check.',
      toolCalls: [
        { id: 'c1', name: 'skill_unit-convert', arguments: '{"value":5,"from":"mi","to":"km"}' },
        { id: 'c2', name: 'skill_weather', arguments: '{"city":"Oslo"}' },
      ],
    },
    { role: 'tool', toolCallId: 'c1', name: 'skill_unit-convert', content: '<untrusted source="tool">\n{"value":8.04672}\n</untrusted>' },
    { role: 'assistant', content: 'plain' },
  ],
  steps: 1,
  callIndex: 1,
  toolCallsRun: 1,
  text: 'Let me check.',
  usage: { promptTokens: 10, completionTokens: 4, totalTokens: 14 },
  elapsedMs: 1234,
  model: 'fake-model',
  finishReason: 'tool_calls',
};

describe('parked turn state', () => {
  it('round-trips the loop progress through its stored (protobuf) form', () => {
    const stored: ParkedTurn = {
      inboundId: 'in-1',
      status: ParkedTurnStatus.PARKED_TURN_STATUS_PARKED,
      inbound: Buffer.from([1, 2, 3]),
      progress: progressToProto(progress),
      approvalId: 'tc-1',
      approval: undefined,
      attempt: 1,
      streamSeq: 7,
      owner: '',
      leaseUntilMs: 0,
      claims: 0,
      createdAtMs: 1,
      updatedAtMs: 2,
      reply: Buffer.alloc(0),
      parks: 1,
      records: [],
      delivered: false,
    };
    const back = ParkedTurn.decode(ParkedTurn.encode(stored).finish());
    assert.deepEqual(progressFromProto(back.progress), progress);
    assert.equal(back.streamSeq, 7);
  });

  it('refuses stored messages with an unknown role and a turn without progress', () => {
    const p = progressToProto(progress);
    p.messages[0]!.role = 'developer';
    assert.throws(() => progressFromProto(p), /unknown role "developer"/);
    assert.throws(() => progressFromProto(undefined), /no loop progress/);
  });

  it('keeps nothing of the conversation once a turn is done', () => {
    const t = ParkedTurn.fromPartial({
      inboundId: 'in-1',
      status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING,
      inbound: Buffer.from('secret-ish user text'),
      progress: progressToProto(progress),
      reply: Buffer.from('reply'),
      records: [{ id: 'in-1:assistant', role: 'assistant', source: 'assistant', content: 'the answer', createdAtMs: 1 }],
      delivered: true,
      owner: 'me',
      approvalId: 'tc-1',
    });
    const d = doneRecord(t, 99);
    assert.deepEqual(d.records, []);
    assert.equal(d.delivered, false);
    assert.equal(d.status, ParkedTurnStatus.PARKED_TURN_STATUS_DONE);
    assert.equal(d.inbound.length, 0);
    assert.equal(d.reply.length, 0);
    assert.equal(d.progress, undefined);
    assert.equal(d.approvalId, 'tc-1');
    assert.ok(ParkedTurn.encode(d).finish().length < 80);
  });

  it('names a stored turn by what is left to do: parked, running, answered (reply stored), delivered (records left), done', () => {
    const t = (p: Partial<ParkedTurn>) => ParkedTurn.fromPartial({ inboundId: 'in-1', ...p });
    assert.equal(storedStatus(t({ status: ParkedTurnStatus.PARKED_TURN_STATUS_PARKED })), 'parked');
    assert.equal(storedStatus(t({ status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING })), 'running');
    assert.equal(storedStatus(t({ status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING, reply: Buffer.from('r') })), 'answered');
    assert.equal(
      storedStatus(t({ status: ParkedTurnStatus.PARKED_TURN_STATUS_RUNNING, reply: Buffer.from('r'), delivered: true })),
      'delivered',
    );
    assert.equal(storedStatus(t({ status: ParkedTurnStatus.PARKED_TURN_STATUS_DONE })), 'done');
  });

  it('stores an obtained answer with its reply route and records, owned for a lease, without the chat messages', () => {
    const inbound = InboundMessage.fromPartial({
      id: 'in-9',
      conversation: { userId: 'u', channel: 'api', threadId: 't' },
      messages: [{ role: Role.ROLE_USER, content: 'the question' }],
      reply: { subject: 'talon.outbound.api.g1', requestId: 'q1', streamSubject: '' },
    });
    const reply = OutboundMessage.fromPartial({ inboundId: 'in-9', content: 'the answer' });
    const records = [{ id: 'in-9:assistant', role: 'assistant', source: 'assistant', content: 'the answer', createdAtMs: 5 }];
    const a = answeredTurn({ inbound, reply, records, attempt: 2, owner: 'me', leaseMs: 1000, now: 50 });
    const back = ParkedTurn.decode(ParkedTurn.encode(a).finish());
    assert.equal(storedStatus(back), 'answered');
    assert.equal(back.owner, 'me');
    assert.equal(back.leaseUntilMs, 1050);
    assert.deepEqual(back.records, records);
    assert.equal(OutboundMessage.decode(back.reply).content, 'the answer');
    const stored = InboundMessage.decode(back.inbound);
    assert.deepEqual(stored.messages, [], 'the user text is in memory already');
    assert.equal(stored.reply?.subject, 'talon.outbound.api.g1');
    assert.deepEqual(stored.conversation, inbound.conversation);
  });

  it('keys turns by a hash of the inbound id (any id is a valid key)', () => {
    assert.match(turnKey('telegram:12345/weird id'), /^turn\.[0-9a-f]{32}$/);
    assert.equal(turnKey('a'), turnKey('a'));
    assert.notEqual(turnKey('a'), turnKey('b'));
  });
});
