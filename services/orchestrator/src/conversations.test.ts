import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SUBJECTS } from '@talon/kit/subjects';
import { TalonError } from '@talon/kit/errors';
import {
  DeleteConversationRequest,
  DeleteUserMemoryRequest,
  GetConversationMessagesRequest,
  ListConversationsRequest,
  UpsertDocumentRequest,
} from '@talon/proto';
import { answerConversationRequest, conversationOp, type ConversationMemory } from './conversations.ts';

function fakeMemory(calls: Array<[string, unknown]>, fail?: unknown): ConversationMemory {
  const record =
    <T>(name: string, res: T) =>
    async (req: unknown): Promise<T> => {
      calls.push([name, req]);
      if (fail) throw fail;
      return res;
    };
  return {
    listConversations: record('list', { conversations: [], nextBefore: '' }),
    conversationMessages: record('messages', { messages: [], nextBefore: '' }),
    deleteConversation: record('delete', { turns: 3, chunks: 2, documents: 1 }),
    deleteUserMemory: record('forget', { conversations: 1, turns: 3, chunks: 2, documents: 1 }),
    upsertDocument: record('document', { documentId: 'd1', chunks: 2, changed: true }),
  };
}

describe('conversation requests in the orchestrator', () => {
  it('knows exactly the five operations', () => {
    assert.equal(conversationOp(SUBJECTS.conversations('list')), 'list');
    assert.equal(conversationOp(SUBJECTS.conversations('forget')), 'forget');
    assert.equal(conversationOp(SUBJECTS.conversations('document')), 'document');
    for (const s of ['talon.conversations.drop', 'talon.conversations.list.x', 'talon.inbound.api', 'talon.conversations.'])
      assert.equal(conversationOp(s), undefined, s);
  });

  it('forwards each request to memory as the asker sent it', async () => {
    const calls: Array<[string, unknown]> = [];
    const memory = fakeMemory(calls);
    const conv = { userId: 'alice', channel: 'api', threadId: 'pets' };
    const list = ListConversationsRequest.encode({ userId: 'alice', limit: 5, before: 'c', channel: 'web' }).finish();
    assert.deepEqual((await answerConversationRequest(memory, SUBJECTS.conversations('list'), list)).reply, {
      list: { conversations: [], nextBefore: '' },
    });
    const msgs = GetConversationMessagesRequest.encode({ conversation: conv, limit: 0, before: '' }).finish();
    await answerConversationRequest(memory, SUBJECTS.conversations('messages'), msgs);
    const del = DeleteConversationRequest.encode({ conversation: conv }).finish();
    assert.deepEqual((await answerConversationRequest(memory, SUBJECTS.conversations('delete'), del)).reply, {
      deleted: { turns: 3, chunks: 2, documents: 1 },
    });
    const forget = DeleteUserMemoryRequest.encode({ userId: 'alice' }).finish();
    assert.equal((await answerConversationRequest(memory, SUBJECTS.conversations('forget'), forget)).reply.forgotten?.conversations, 1);
    assert.deepEqual(calls, [
      ['list', { userId: 'alice', limit: 5, before: 'c', channel: 'web' }],
      ['messages', { conversation: conv, limit: 0, before: '' }],
      ['delete', { conversation: conv }],
      ['forget', { userId: 'alice' }],
    ]);
  });

  it('stores an imported document for the named user, never tied to a conversation', async () => {
    const calls: Array<[string, unknown]> = [];
    const doc = { userId: 'alice', key: 'openclaw:MEMORY.md', title: 'MEMORY.md', content: 'likes tea', source: 'user' };
    const data = UpsertDocumentRequest.encode({ ...doc, origin: { userId: 'alice', channel: 'api', threadId: 'x' } }).finish();
    const { reply } = await answerConversationRequest(fakeMemory(calls), SUBJECTS.conversations('document'), data);
    assert.deepEqual(reply, { document: { documentId: 'd1', chunks: 2, changed: true } });
    assert.deepEqual(calls, [['document', { ...doc, origin: undefined }]]);
    const none = UpsertDocumentRequest.encode({ ...doc, userId: '', origin: undefined }).finish();
    assert.equal(
      (await answerConversationRequest(fakeMemory(calls), SUBJECTS.conversations('document'), none)).reply.error?.code,
      'invalid_argument',
    );
    assert.equal(calls.length, 1);
  });

  it('refuses requests that name no user before calling memory', async () => {
    const calls: Array<[string, unknown]> = [];
    const memory = fakeMemory(calls);
    const cases: Array<[Parameters<typeof SUBJECTS.conversations>[0], Uint8Array]> = [
      ['list', ListConversationsRequest.encode({ userId: '', limit: 0, before: '', channel: '' }).finish()],
      ['forget', new Uint8Array()],
      ['delete', DeleteConversationRequest.encode({ conversation: undefined }).finish()],
      [
        'messages',
        GetConversationMessagesRequest.encode({
          conversation: { userId: '', channel: 'api', threadId: 'x' },
          limit: 0,
          before: '',
        }).finish(),
      ],
      ['delete', new Uint8Array([0xff, 0xff, 0xff])],
    ];
    for (const [op, data] of cases) {
      const { reply } = await answerConversationRequest(memory, SUBJECTS.conversations(op), data);
      assert.equal(reply.error?.code, 'invalid_argument', op);
    }
    assert.equal(
      (await answerConversationRequest(memory, 'talon.conversations.drop', new Uint8Array())).reply.error?.code,
      'invalid_argument',
    );
    assert.deepEqual(calls, []);
  });

  it("passes memory's typed errors on and hides anything else", async () => {
    const del = DeleteConversationRequest.encode({ conversation: { userId: 'alice', channel: 'api', threadId: 'x' } }).finish();
    const nf = await answerConversationRequest(
      fakeMemory([], new TalonError('not_found', 'no conversation api/x for this user')),
      SUBJECTS.conversations('delete'),
      del,
    );
    assert.deepEqual(nf.reply, { error: { code: 'not_found', message: 'no conversation api/x for this user' } });
    const down = await answerConversationRequest(
      fakeMemory([], new TalonError('unavailable', 'memory down')),
      SUBJECTS.conversations('delete'),
      del,
    );
    assert.equal(down.reply.error?.code, 'unavailable');
    const bug = await answerConversationRequest(
      fakeMemory([], new Error('secret internals at /srv/x')),
      SUBJECTS.conversations('delete'),
      del,
    );
    assert.deepEqual(bug.reply, { error: { code: 'internal', message: 'the request failed inside the orchestrator' } });
  });
});
