import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ParkedTurn, ParkedTurnStatus } from '@talon/proto';
import type { LoopProgress } from './agent-loop.ts';
import { doneRecord, progressFromProto, progressToProto, turnKey } from './turn-state.ts';

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
      owner: 'me',
      approvalId: 'tc-1',
    });
    const d = doneRecord(t, 99);
    assert.equal(d.status, ParkedTurnStatus.PARKED_TURN_STATUS_DONE);
    assert.equal(d.inbound.length, 0);
    assert.equal(d.reply.length, 0);
    assert.equal(d.progress, undefined);
    assert.equal(d.approvalId, 'tc-1');
    assert.ok(ParkedTurn.encode(d).finish().length < 80);
  });

  it('keys turns by a hash of the inbound id (any id is a valid key)', () => {
    assert.match(turnKey('telegram:12345/weird id'), /^turn\.[0-9a-f]{32}$/);
    assert.equal(turnKey('a'), turnKey('a'));
    assert.notEqual(turnKey('a'), turnKey('b'));
  });
});
