// The API channels through the real pipeline: the `openai` npm client unchanged
// against /v1 (plain and streaming), and the WebSocket API at /v1/ws.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import { openWs, TEST_VAULT_PASSPHRASE } from '../../packages/testkit/src/fake-platforms.ts';

describe('API channels: OpenAI client and WebSocket', () => {
  let tp: TestPlatform;
  let token: string;
  let wsUrl: string;
  let origin: string;

  before(async () => {
    tp = await startTestPlatform({ env: { TALON_VAULT_PASSPHRASE: TEST_VAULT_PASSPHRASE, GATEWAY_WS_AUTH_TIMEOUT_MS: '1500' } });
    token = await tp.token('olivia');
    origin = tp.gatewayUrl;
    wsUrl = `${tp.gatewayUrl.replace('http', 'ws')}/v1/ws`;
  });
  after(async () => {
    await tp?.stop();
  });

  it('the openai client works unchanged: completion, streaming and models', async () => {
    const client = new OpenAI({ apiKey: token, baseURL: `${tp.gatewayUrl}/v1`, maxRetries: 0 });
    const c = await client.chat.completions.create({ model: 'talon', messages: [{ role: 'user', content: 'hello from openai' }] });
    assert.equal(c.choices[0]!.message.content, 'echo: hello from openai');
    assert.equal(c.object, 'chat.completion');
    const stream = await client.chat.completions.create({
      model: 'talon',
      stream: true,
      messages: [{ role: 'user', content: 'stream me' }],
    });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    for await (const ch of stream) {
      chunks += 1;
      text += ch.choices[0]?.delta?.content ?? '';
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, 'echo: stream me');
    assert.ok(chunks > 2);
    assert.equal(finish, 'stop');
    const models = await client.models.list();
    // The one model of TALON_LLM_MODEL ("talon" still names it, unlisted).
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['fake-model'],
    );
  });

  it('the openai client surfaces Talon errors (bad token: 401 AuthenticationError)', async () => {
    const client = new OpenAI({ apiKey: `talon_pat_${'1'.repeat(64)}`, baseURL: `${tp.gatewayUrl}/v1`, maxRetries: 0 });
    await assert.rejects(client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'x' }] }), (e: any) => {
      assert.equal(e.status, 401);
      assert.match(String(e.message), /invalid API token/);
      return true;
    });
  });

  it('WebSocket: authenticates with the first message and streams a reply', async () => {
    const c = await openWs(wsUrl, { origin });
    c.ws.send(JSON.stringify({ type: 'auth', token }));
    const ready = await c.next((m) => m.type === 'ready');
    assert.equal(ready.user, 'olivia');
    assert.equal(ready.scope, 'user');
    c.ws.send(JSON.stringify({ type: 'chat', id: 'a1', conversation: 'ws-test', content: 'over the socket' }));
    const done = await c.next((m) => m.type === 'done' && m.id === 'a1');
    assert.equal(done.content, 'echo: over the socket');
    const deltas = c.messages
      .filter((m) => m.type === 'delta' && m.id === 'a1')
      .map((m) => m.content)
      .join('');
    assert.equal(deltas, 'echo: over the socket');
    assert.ok(c.messages.some((m) => m.type === 'queued' && m.id === 'a1'));
    c.ws.send(JSON.stringify({ type: 'ping', id: 'p' }));
    await c.next((m) => m.type === 'pong');
    c.ws.close();
  });

  it('WebSocket: authenticates with a subprotocol (never echoed) and runs turns concurrently', async () => {
    const c = await openWs(wsUrl, { origin, protocols: ['talon.v1', `talon.bearer.${token}`] });
    assert.equal(c.ws.protocol, 'talon.v1');
    await c.next((m) => m.type === 'ready');
    for (const id of ['x1', 'x2', 'x3']) c.ws.send(JSON.stringify({ type: 'chat', id, content: `turn ${id}`, stream: false }));
    for (const id of ['x1', 'x2', 'x3']) {
      const d = await c.next((m) => m.type === 'done' && m.id === id);
      assert.equal(d.content, `echo: turn ${id}`);
    }
    c.ws.close();
  });

  it('WebSocket: refuses chat before auth, a bad token, and bad frames with clear errors', async () => {
    const a = await openWs(wsUrl, { origin });
    a.ws.send(JSON.stringify({ type: 'chat', id: 'z', content: 'sneaky' }));
    const err = await a.next((m) => m.type === 'error');
    assert.equal(err.error.code, 'unauthenticated');
    assert.equal((await a.closed).code, 4401);

    const b = await openWs(wsUrl, { origin });
    b.ws.send(JSON.stringify({ type: 'auth', token: `talon_pat_${'2'.repeat(64)}` }));
    assert.equal((await b.closed).code, 4401);

    const c = await openWs(wsUrl, { origin });
    c.ws.send(JSON.stringify({ type: 'auth', token }));
    await c.next((m) => m.type === 'ready');
    c.ws.send('not json');
    assert.equal((await c.next((m) => m.type === 'error')).error.code, 'invalid_json');
    c.ws.send(JSON.stringify({ type: 'chat', id: 'bad', messages: [{ role: 'wizard', content: 'x' }] }));
    const e2 = await c.next((m) => m.type === 'error' && m.id === 'bad');
    assert.equal(e2.error.code, 'invalid_argument');
    c.ws.send(JSON.stringify({ type: 'chat', content: 'no id' }));
    await c.next((m) => m.type === 'error' && /need an id/.test(m.error.message));
    c.ws.close();
  });

  it('WebSocket: an unauthenticated connection is closed after the auth timeout', async () => {
    const c = await openWs(wsUrl, { origin });
    const closed = await c.closed;
    assert.equal(closed.code, 4408);
  });
});
