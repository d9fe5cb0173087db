import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { conversationResult } from '@talon/kit/conversations';
import { TalonError } from '@talon/kit/errors';
import type { Principal } from './auth.ts';
import { jsonResponse } from '../test/json-response.ts';
import { conversationRoute, ConversationsApi, pageParams, type Ask } from './conversations.ts';

const alice: Principal = { userId: 'alice', tokenId: 't', tokenName: 'n', scope: 'user', tokenHash: 'h' };

async function call(api: ConversationsApi, method: string, target: string, p = alice) {
  const { res, out } = jsonResponse();
  const url = new URL(target, 'http://gateway.invalid');
  const handled = await api.route({ method } as IncomingMessage, res, url, p);
  return { handled, ...out };
}

describe('conversation routes in the gateway', () => {
  it('parses paths and ids', () => {
    assert.deepEqual(conversationRoute('/v1/conversations'), { kind: 'list' });
    assert.deepEqual(conversationRoute('/v1/memory'), { kind: 'memory' });
    assert.deepEqual(conversationRoute('/v1/conversations/pets'), { kind: 'conversation', threadId: 'pets' });
    assert.deepEqual(conversationRoute('/v1/conversations/chat%3A42/messages'), { kind: 'messages', threadId: 'chat:42' });
    assert.equal(conversationRoute('/v1/conversations/a/b'), undefined);
    assert.equal(conversationRoute('/v1/memory/x'), undefined);
    for (const bad of ['%2e%2e', '%E0%A4%A', '%20pets', 'a%2Fb', '%00', 'x'.repeat(201)])
      assert.throws(
        () => conversationRoute(`/v1/conversations/${bad}`),
        (e: unknown) => e instanceof TalonError && e.code === 'invalid_argument',
        bad,
      );
  });

  it('checks query parameters', () => {
    const q = (s: string) => pageParams(new URL(`http://x/v1/conversations${s}`), 200);
    assert.deepEqual(q(''), { limit: 0, before: '', channel: undefined });
    assert.deepEqual(q('?limit=5000&channel=telegram&before=abc_-1'), { limit: 200, before: 'abc_-1', channel: 'telegram' });
    assert.equal(q('?limit=0').limit, 1);
    for (const bad of ['?limit=-1', '?limit=1e3', "?channel=api'", '?channel=API', '?before=a+b', '?before=%27'])
      assert.throws(
        () => q(bad),
        (e: unknown) => e instanceof TalonError && e.code === 'invalid_argument',
        bad,
      );
  });

  it("asks only for the principal's own user, whatever the request says", async () => {
    const asked: Array<[string, unknown]> = [];
    const ask: Ask = async (op, req) => {
      asked.push([op, req]);
      const results = {
        list: {
          conversations: [{ channel: 'api', threadId: 'pets', title: 'Cats', createdAtMs: 1, lastActivityMs: 2, turns: 3 }],
          nextBefore: '',
        },
        messages: { messages: [{ id: 'm1', role: 'user', content: 'hi', source: 'user', createdAtMs: 5 }], nextBefore: 'n' },
        delete: { turns: 2, chunks: 2, documents: 0 },
        forget: { conversations: 1, turns: 2, chunks: 2, documents: 1 },
        document: { documentId: 'd1', chunks: 1, changed: true },
      };
      return results[op] as never;
    };
    const api = new ConversationsApi(ask);
    const list = await call(api, 'GET', '/v1/conversations?user=bob&userId=bob&limit=10');
    assert.equal(list.status, 200);
    assert.deepEqual(list.body, {
      conversations: [{ id: 'pets', channel: 'api', title: 'Cats', createdAtMs: 1, lastActivityAtMs: 2, turns: 3 }],
      nextBefore: null,
    });
    const msgs = await call(api, 'GET', '/v1/conversations/chat%3A42/messages?channel=telegram');
    assert.deepEqual(msgs.body, {
      conversation: { id: 'chat:42', channel: 'telegram' },
      messages: [{ id: 'm1', role: 'user', content: 'hi', createdAtMs: 5 }],
      nextBefore: 'n',
    });
    assert.equal((await call(api, 'DELETE', '/v1/conversations/pets')).status, 200);
    const forgot = await call(api, 'DELETE', '/v1/memory', { ...alice, scope: 'operator' });
    assert.deepEqual(forgot.body, { deleted: { conversations: 1, turns: 2, chunks: 2, documents: 1 } });
    assert.deepEqual(asked, [
      ['list', { userId: 'alice', limit: 10, before: '', channel: '' }],
      ['messages', { conversation: { userId: 'alice', channel: 'telegram', threadId: 'chat:42' }, limit: 0, before: '' }],
      ['delete', { conversation: { userId: 'alice', channel: 'api', threadId: 'pets' } }],
      ['forget', { userId: 'alice' }],
    ]);
  });

  it('refuses other methods and leaves other paths alone', async () => {
    const api = new ConversationsApi((async () => assert.fail('must not ask')) as Ask);
    for (const [method, path] of [
      ['POST', '/v1/conversations'],
      ['DELETE', '/v1/conversations'],
      ['GET', '/v1/conversations/pets'],
      ['DELETE', '/v1/conversations/pets/messages'],
      ['GET', '/v1/memory'],
    ])
      await assert.rejects(
        call(api, method!, path!),
        (e: unknown) => e instanceof TalonError && e.code === 'method_not_allowed',
        `${method} ${path}`,
      );
    assert.equal((await call(api, 'GET', '/v1/me')).handled, false);
  });

  it("turns the orchestrator's typed errors into TalonErrors (and so HTTP statuses)", () => {
    assert.throws(
      () => conversationResult('delete', { error: { code: 'not_found', message: 'no conversation api/x for this user' } }),
      (e: unknown) => e instanceof TalonError && e.code === 'not_found' && e.httpStatus === 404,
    );
    assert.throws(
      () => conversationResult('list', { error: { code: 'weird_code', message: 'x' } }),
      (e: unknown) => e instanceof TalonError && e.code === 'upstream_error' && e.httpStatus === 502,
    );
    assert.throws(
      () => conversationResult('list', { deleted: { turns: 1, chunks: 0, documents: 0 } }),
      (e: unknown) => e instanceof TalonError && e.code === 'upstream_error',
    );
    assert.deepEqual(conversationResult('delete', { deleted: { turns: 1, chunks: 0, documents: 0 } }), {
      turns: 1,
      chunks: 0,
      documents: 0,
    });
  });
});
