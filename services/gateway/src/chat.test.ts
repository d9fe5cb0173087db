import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OutboundMessage, Role } from '@talon/proto';
import { InvalidArgument, type TalonError } from '@talon/kit/errors';
import { completionBody, parseChatRequest, toolCallDeltas } from './chat.ts';

let unnamed = 0;
const opts = { maxMessages: 4, unnamedConversation: () => `unnamed-${++unnamed}` };

describe('parseChatRequest', () => {
  it('accepts an OpenAI request, maps roles and joins text parts', () => {
    const r = parseChatRequest(
      {
        model: 'gpt-x',
        stream: true,
        temperature: 0.5,
        max_completion_tokens: 100,
        messages: [
          { role: 'developer', content: 'be brief' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hel' },
              { type: 'text', text: 'lo' },
            ],
          },
        ],
        unknown_field: 1,
      },
      opts,
    );
    assert.equal(r.stream, true);
    assert.equal(r.maxTokens, 100);
    assert.deepEqual(
      r.messages.map((m) => m.role),
      [Role.ROLE_SYSTEM, Role.ROLE_USER],
    );
    assert.equal(r.messages[1]!.content, 'hello');
    assert.match(r.conversationId, /^unnamed-\d+$/, 'a request naming no conversation gets its own');
  });

  it('reads stream_options.include_usage, for a stream only', () => {
    const messages = [{ role: 'user', content: 'x' }];
    assert.equal(parseChatRequest({ messages, stream: true, stream_options: { include_usage: true } }, opts).includeUsage, true);
    assert.equal(parseChatRequest({ messages, stream: true }, opts).includeUsage, false);
    assert.equal(parseChatRequest({ messages, stream: false, stream_options: { include_usage: true } }, opts).includeUsage, false);
    assert.equal(parseChatRequest({ messages, stream: true, stream_options: null }, opts).includeUsage, false);
  });

  it('gives each request that names no conversation a new one (OpenAI clients share nothing)', () => {
    const body = { messages: [{ role: 'user', content: 'x' }] };
    assert.notEqual(parseChatRequest(body, opts).conversationId, parseChatRequest(body, opts).conversationId);
  });

  it('takes the conversation id from the header before metadata', () => {
    const body = { messages: [{ role: 'user', content: 'x' }], metadata: { conversation_id: 'meta-1' } };
    assert.equal(parseChatRequest(body, opts).conversationId, 'meta-1');
    assert.equal(parseChatRequest(body, { ...opts, conversationHeader: 'hdr-1' }).conversationId, 'hdr-1');
    assert.throws(() => parseChatRequest(body, { ...opts, conversationHeader: 'a b' }), InvalidArgument);
  });

  for (const [name, body] of [
    ['null', null],
    ['string', 'hi'],
    ['too many messages', { messages: Array(5).fill({ role: 'user', content: 'x' }) }],
    ['non-object message', { messages: ['hi'] }],
    ['object content', { messages: [{ role: 'user', content: { a: 1 } }] }],
    ['max_tokens zero', { max_tokens: 0, messages: [{ role: 'user', content: 'x' }] }],
    ['max_tokens float', { max_tokens: 1.5, messages: [{ role: 'user', content: 'x' }] }],
    ['model number', { model: 3, messages: [{ role: 'user', content: 'x' }] }],
  ] as const) {
    it(`rejects ${name}`, () => {
      assert.throws(() => parseChatRequest(body, opts), InvalidArgument);
    });
  }
});

describe('OpenAI tools and images in a chat request', () => {
  const png = `data:image/png;base64,${Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1]).toString('base64')}`;

  it('carries tools, tool calls, tool call ids and images', () => {
    const r = parseChatRequest(
      {
        tools: [{ type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } }],
        tool_choice: 'auto',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'what is this?' },
              { type: 'image_url', image_url: { url: png } },
            ],
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_time', arguments: '{}' } }],
          },
          { role: 'tool', tool_call_id: 'c1', content: '12:00' },
        ],
      },
      opts,
    );
    assert.equal(r.clientTools?.tools[0]?.name, 'get_time');
    assert.equal(r.clientTools?.choice, 'auto');
    assert.equal(r.images, 1);
    assert.deepEqual(r.messages[0]!.parts?.images, [{ url: png, detail: '' }]);
    assert.equal(r.messages[0]!.content, 'what is this?');
    assert.deepEqual(r.messages[1]!.parts?.toolCalls, [{ id: 'c1', name: 'get_time', arguments: '{}' }]);
    assert.equal(r.messages[2]!.parts?.toolCallId, 'c1');
    assert.equal(parseChatRequest({ messages: [{ role: 'user', content: 'x' }] }, opts).messages[0]!.parts, undefined);
  });

  it('refuses images outside user messages and over the cap', () => {
    const img = { type: 'image_url', image_url: { url: png } };
    assert.throws(
      () =>
        parseChatRequest(
          {
            messages: [
              { role: 'user', content: 'x' },
              { role: 'assistant', content: [img] },
            ],
          },
          opts,
        ),
      (e: TalonError) => e.param === 'messages[1].content[0]',
    );
    assert.throws(
      () => parseChatRequest({ messages: [{ role: 'user', content: [img] }] }, { ...opts, maxImageBytes: 4 }),
      (e: TalonError) => e.code === 'image_too_large' && e.param === 'messages[0].content[0].image_url.url',
    );
  });

  it('answers tool calls as OpenAI does, whole and streamed', () => {
    const out = OutboundMessage.fromPartial({
      model: 'm',
      finishReason: 'tool_calls',
      clientToolCalls: { calls: [{ id: 'call_a', name: 'get_time', arguments: '{"tz":"UTC"}' }] },
    });
    const body = completionBody('id', 1, out);
    assert.deepEqual(body.choices[0]!.message, {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'get_time', arguments: '{"tz":"UTC"}' } }],
    });
    assert.equal(body.choices[0]!.finish_reason, 'tool_calls');
    const deltas = toolCallDeltas(out, 5);
    assert.deepEqual(deltas[0], {
      tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'get_time', arguments: '' } }],
    });
    const args = deltas.slice(1).map((d) => (d.tool_calls[0]!.function as { arguments: string }).arguments);
    assert.ok(args.length > 1);
    assert.equal(args.join(''), '{"tz":"UTC"}');
    assert.deepEqual(completionBody('id', 1, OutboundMessage.fromPartial({ content: 'hi' })).choices[0]!.message, {
      role: 'assistant',
      content: 'hi',
    });
  });
});
