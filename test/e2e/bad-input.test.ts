// Bad input gets a precise error and the platform keeps serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

describe('malformed and hostile API requests', () => {
  let tp: TestPlatform;
  let token: string;
  before(async () => {
    tp = await startTestPlatform({ env: { GATEWAY_MAX_BODY_BYTES: '65536' } });
    token = await tp.token('carol');
  });
  after(async () => {
    await tp?.stop();
  });

  it('400 for a body that is not JSON, naming the problem', async () => {
    const r = await tp.chat(token, '{"messages": [');
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_json');
  });

  for (const [name, body, pattern] of [
    ['missing messages', {}, /messages is required/],
    ['empty messages', { messages: [] }, /must not be empty/],
    ['unknown role', { messages: [{ role: 'wizard', content: 'x' }] }, /role must be one of/],
    ['no user message', { messages: [{ role: 'system', content: 'x' }] }, /at least one user message/],
    ['non-boolean stream', { stream: 'yes', messages: [{ role: 'user', content: 'x' }] }, /stream must be a boolean/],
    ['temperature out of range', { temperature: 7, messages: [{ role: 'user', content: 'x' }] }, /temperature/],
    ['array body', [1, 2], /JSON object/],
    ['audio part', { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'x' } }] }] }, /only text parts/],
  ] as const) {
    it(`400 for ${name}`, async () => {
      const r = await tp.chat(token, body);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, 'invalid_argument');
      assert.match(r.json.error.message, pattern);
    });
  }

  it('400 for a bad conversation id header', async () => {
    const r = await tp.chat(token, { messages: [{ role: 'user', content: 'x' }] }, { 'x-talon-conversation': '../../etc/passwd' });
    assert.equal(r.status, 400);
  });

  it('413 for an oversized body, declared or streamed', async () => {
    const big = JSON.stringify({ messages: [{ role: 'user', content: 'a'.repeat(200_000) }] });
    const r = await tp.chat(token, big);
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, 'payload_too_large');
    // Chunked upload without Content-Length is cut off at the limit too.
    const res = await fetch(`${tp.gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode('x'.repeat(10_000)));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    assert.equal(res.status, 413);
  });

  it('415 for a non-JSON content type', async () => {
    const res = await fetch(`${tp.gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      body: 'hi',
    });
    assert.equal(res.status, 415);
  });

  it('refuses tokens in the URL and unknown routes', async () => {
    const q = await fetch(`${tp.gatewayUrl}/v1/chat/completions?token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(q.status, 400);
    assert.match(((await q.json()) as { error: { message: string } }).error.message, /never accepted in a URL/);
    const nf = await fetch(`${tp.gatewayUrl}/v1/nope`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(nf.status, 404);
    const m = await fetch(`${tp.gatewayUrl}/v1/chat/completions`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(m.status, 405);
  });

  it('keeps serving afterwards, and every service is still healthy', async () => {
    const r = await tp.chat(token, { messages: [{ role: 'user', content: 'still there?' }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].message.content, 'echo: still there?');
    await tp.platform.waitHealthy(undefined, 5000);
    for (const s of ['gateway', 'orchestrator', 'memory', 'egress'] as const) assert.ok(tp.platform.process(s)!.running, `${s} running`);
  });
});
