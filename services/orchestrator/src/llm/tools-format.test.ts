import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { anthropicFormat } from './anthropic.ts';
import { openaiFormat } from './openai.ts';
import { StreamAccumulator, type LlmMessage, type LlmRequest } from './types.ts';

const tools = [{ name: 'memory_search', description: 'search', parameters: { type: 'object', properties: { query: { type: 'string' } } } }];
const history: LlmMessage[] = [
  { role: 'system', content: 'sys' },
  { role: 'user', content: 'what is my cat called?' },
  {
    role: 'assistant',
    content: '',
    toolCalls: [
      { id: 'c1', name: 'memory_search', arguments: '{"query":"cat"}' },
      { id: 'c2', name: 'memory_search', arguments: 'not json' },
    ],
  },
  { role: 'tool', toolCallId: 'c1', name: 'memory_search', content: '<untrusted source="tool">Pixel</untrusted>' },
  { role: 'tool', toolCallId: 'c2', name: 'memory_search', content: '<untrusted source="tool">error</untrusted>' },
];
const req = (over: Partial<LlmRequest> = {}): LlmRequest => ({ model: 'm', messages: history, stream: false, tools, ...over });

describe('OpenAI tool calling format', () => {
  it('declares tools and replays tool calls and results', () => {
    const b = openaiFormat.body(req({ toolChoice: 'none' })) as any;
    assert.deepEqual(b.tools[0], { type: 'function', function: tools[0] });
    assert.equal(b.tool_choice, 'none');
    assert.equal(b.messages[0].role, 'system');
    assert.equal(b.messages[2].content, null);
    assert.deepEqual(b.messages[2].tool_calls[0], {
      id: 'c1',
      type: 'function',
      function: { name: 'memory_search', arguments: '{"query":"cat"}' },
    });
    assert.deepEqual(b.messages[3], { role: 'tool', tool_call_id: 'c1', content: '<untrusted source="tool">Pixel</untrusted>' });
    assert.equal((openaiFormat.body(req({ tools: [] })) as any).tools, undefined);
  });

  it('parses tool calls from a response with null content', () => {
    const r = openaiFormat.parseResponse(
      {
        choices: [
          {
            message: {
              content: null,
              tool_calls: [{ id: 'x', type: 'function', function: { name: 'memory_save', arguments: '{"text":"a"}' } }],
            },
            finish_reason: 'tool_calls',
          },
        ],
      },
      'm',
    );
    assert.equal(r.content, '');
    assert.deepEqual(r.toolCalls, [{ id: 'x', name: 'memory_save', arguments: '{"text":"a"}' }]);
    assert.throws(() => openaiFormat.parseResponse({ choices: [{ message: { content: null } }] }, 'm'));
  });

  it('assembles streamed tool call fragments', () => {
    const acc = new StreamAccumulator();
    const ev = (o: unknown) => openaiFormat.applyStreamEvent({ event: 'message', data: JSON.stringify(o) }, acc);
    ev({ choices: [{ delta: { content: 'Let me look. ' } }] });
    ev({ choices: [{ delta: { tool_calls: [{ index: 0, id: 'a', function: { name: 'memory_search', arguments: '{"qu' } }] } }] });
    ev({ choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: 'ery":"x"}' } }] } }] });
    ev({ choices: [{ delta: { tool_calls: [{ index: 1, id: 'b', function: { name: 'memory_save', arguments: '{}' } }] } }] });
    ev({ choices: [{ delta: {}, finish_reason: 'tool_calls' }] });
    const r = acc.result('m');
    assert.equal(r.content, 'Let me look. ');
    assert.deepEqual(r.toolCalls, [
      { id: 'a', name: 'memory_search', arguments: '{"query":"x"}' },
      { id: 'b', name: 'memory_save', arguments: '{}' },
    ]);
  });
});

describe('Anthropic tool calling format', () => {
  it('sends tool_use and merges tool_result blocks into one user message; system stays separate', () => {
    const b = anthropicFormat.body(req()) as any;
    assert.equal(b.system, 'sys');
    assert.deepEqual(b.tools[0], { name: 'memory_search', description: 'search', input_schema: tools[0]!.parameters });
    assert.deepEqual(b.tool_choice, { type: 'auto' });
    assert.equal(b.messages.length, 3);
    assert.deepEqual(b.messages[1].content[0], { type: 'tool_use', id: 'c1', name: 'memory_search', input: { query: 'cat' } });
    assert.deepEqual(b.messages[1].content[1].input, {}, 'unparseable arguments become an empty object');
    assert.equal(b.messages[2].role, 'user');
    assert.deepEqual(
      b.messages[2].content.map((x: any) => [x.type, x.tool_use_id]),
      [
        ['tool_result', 'c1'],
        ['tool_result', 'c2'],
      ],
    );
    assert.ok(!JSON.stringify(b.system).includes('Pixel'), 'tool output never reaches the system prompt');
  });

  it('merges consecutive user messages (recalled memories before the history)', () => {
    const b = anthropicFormat.body({
      model: 'm',
      stream: false,
      messages: [
        { role: 'user', content: 'memories' },
        { role: 'user', content: 'hi' },
      ],
    }) as any;
    assert.equal(b.messages.length, 1);
    assert.deepEqual(b.messages[0].content, [
      { type: 'text', text: 'memories' },
      { type: 'text', text: 'hi' },
    ]);
  });

  it('parses tool_use from a response and from a stream', () => {
    const r = anthropicFormat.parseResponse(
      {
        content: [
          { type: 'text', text: 'ok' },
          { type: 'tool_use', id: 't1', name: 'memory_save', input: { text: 'x' } },
        ],
        stop_reason: 'tool_use',
      },
      'm',
    );
    assert.equal(r.finishReason, 'tool_calls');
    assert.deepEqual(r.toolCalls, [{ id: 't1', name: 'memory_save', arguments: '{"text":"x"}' }]);
    const acc = new StreamAccumulator();
    const ev = (o: any) => anthropicFormat.applyStreamEvent({ event: o.type, data: JSON.stringify(o) }, acc);
    ev({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
    ev({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hm' } });
    ev({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 't2', name: 'memory_search', input: {} } });
    ev({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"query":' } });
    ev({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '"cat"}' } });
    ev({ type: 'message_delta', delta: { stop_reason: 'tool_use' } });
    const s = acc.result('m');
    assert.equal(s.content, 'hm');
    assert.deepEqual(s.toolCalls, [{ id: 't2', name: 'memory_search', arguments: '{"query":"cat"}' }]);
  });
});
