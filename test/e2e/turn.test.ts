// One chat turn through the real pipeline: gateway -> JetStream -> orchestrator
// -> egress (mTLS) -> fake LLM -> orchestrator -> memory (gRPC, PostgreSQL) -> gateway.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

/** The data of each server-sent event, in order. */
function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6));
}

describe('first turn end to end', () => {
  let tp: TestPlatform;
  let token: string;

  before(async () => {
    tp = await startTestPlatform();
    token = await tp.token('alice');
  });
  after(async () => {
    await tp?.stop();
  });

  it('answers a non-streaming chat completion through egress', async () => {
    const res = await tp.chat(token, { model: 'fake-model', messages: [{ role: 'user', content: 'hello talon' }] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.object, 'chat.completion');
    assert.equal(res.json.choices[0].message.role, 'assistant');
    assert.equal(res.json.choices[0].message.content, 'echo: hello talon');
    assert.equal(res.json.usage.total_tokens, 12);
    // The fake received the request from egress, with our system prompt first.
    const seen = tp.llm!.requests.at(-1)!;
    assert.equal(seen.path, '/v1/chat/completions');
    const msgs = seen.body.messages as Array<{ role: string; content: string }>;
    assert.equal(msgs[0]!.role, 'system');
    assert.equal(msgs.at(-1)!.content, 'hello talon');
    assert.equal(seen.body.model, 'fake-model');
  });

  it('streams a reply as server-sent events', async () => {
    const res = await tp.chat(token, { stream: true, messages: [{ role: 'user', content: 'stream this please' }] });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const events = sseData(res.text);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.ok(
      chunks.every((c) => c.object === 'chat.completion.chunk'),
      res.text,
    );
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'echo: stream this please');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
    assert.ok(chunks.length > 3, 'reply arrived in several chunks');
  });

  it('streams as OpenAI does: one model name in every chunk, usage last when stream_options asks for it', async () => {
    const res = await tp.chat(token, {
      // "talon" names the default model (here fake-model): chunks carry the name as requested.
      model: 'talon',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'count my tokens' }],
    });
    assert.equal(res.status, 200);
    const events = sseData(res.text);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.deepEqual([...new Set(chunks.map((c) => c.model))], ['talon']);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.total_tokens > 0, JSON.stringify(last.usage));
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
    // Without the option, no usage chunk: every chunk has a choice.
    const plain = await tp.chat(token, { stream: true, messages: [{ role: 'user', content: 'no usage' }] });
    assert.ok(
      sseData(plain.text)
        .filter((e) => e.startsWith('{'))
        .every((e) => JSON.parse(e).choices.length === 1),
    );
  });

  it("answers errors in OpenAI's envelope: an error type OpenAI clients know, the reason in code", async () => {
    const res = await tp.chat(token, { messages: [] });
    assert.equal(res.status, 400);
    assert.equal(res.json.error.type, 'invalid_request_error');
    assert.equal(res.json.error.code, 'invalid_argument');
    const anon = await tp.chat(undefined, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(anon.json.error.type, 'authentication_error');
  });

  it('refuses a request without a valid token', async () => {
    const none = await tp.chat(undefined, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'unauthenticated');
    const bad = await tp.chat(`talon_pat_${'0'.repeat(64)}`, { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(bad.status, 401);
  });
});
