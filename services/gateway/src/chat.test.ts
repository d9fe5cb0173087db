import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Role } from '@talon/proto';
import { InvalidArgument } from '@talon/kit/errors';
import { parseChatRequest } from './chat.ts';

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
