import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChatMessage, Role } from '@talon/proto';
import { redactMessages, type TextRedactor } from './redaction.ts';

/** Stands in for egress's RedactText: replaces SECRET with a label. */
const redactor: TextRedactor & { asked: string[] } = {
  asked: [],
  async redactTexts(texts) {
    this.asked.push(...texts);
    return texts.map((t) =>
      t.includes('SECRET') ? { text: t.replaceAll('SECRET', '[redacted:test]'), labels: ['test'] } : { text: t, labels: [] },
    );
  },
};

describe('redactMessages', () => {
  it('redacts message text and the arguments of tool calls sent back, leaving the input alone', async () => {
    const messages = [
      ChatMessage.fromPartial({ role: Role.ROLE_USER, content: 'my SECRET' }),
      ChatMessage.fromPartial({
        role: Role.ROLE_ASSISTANT,
        parts: { toolCalls: [{ id: 'c', name: 'login', arguments: '{"t":"SECRET"}' }] },
      }),
    ];
    const r = await redactMessages(redactor, messages);
    assert.deepEqual(r.labels, ['test']);
    assert.equal(r.messages[0]!.content, 'my [redacted:test]');
    assert.equal(r.messages[1]!.parts?.toolCalls[0]?.arguments, '{"t":"[redacted:test]"}');
    assert.equal(messages[1]!.parts?.toolCalls[0]?.arguments, '{"t":"SECRET"}', 'the input is not changed');
    assert.deepEqual(redactor.asked, ['my SECRET', '{"t":"SECRET"}'], 'empty texts are not sent');
  });
});
