// The OpenAI API with a client's own function tools and with image parts, through the
// real pipeline (gateway, NATS, orchestrator, egress, memory) and driven by the `openai`
// client. The fake provider answers with tool calls when the request offers tools; it
// records what it received. Talon never runs a client tool: the calls go back to the
// client, which sends the results in its next request. Images reach a model configured
// with "vision": true, are refused for any other, and never reach memory.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { offeredTools, startFakeLlm, startTestPlatform, type FakeLlm, type RecordedLlmRequest, type TestPlatform } from '@talon/testkit';
import { RULE_FIXTURES } from '../../services/egress/src/scan/rule-fixtures.ts';

const LEAK = RULE_FIXTURES.github_pat!.positives[0]!;
const MAX_IMAGE = 4096;
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('fake-png-body')]);
const PNG_URL = `data:image/png;base64,${PNG.toString('base64')}`;
const WEATHER: OpenAI.Chat.Completions.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

type WireMessage = { role: string; content: unknown; tool_calls?: unknown; tool_call_id?: string };
const messagesOf = (r: RecordedLlmRequest) => r.body.messages as WireMessage[];

describe('OpenAI API: client tools and images', () => {
  let llm: FakeLlm;
  let tp: TestPlatform;
  let client: OpenAI;
  let token: string;

  before(async () => {
    // A request offering get_weather gets a call of it, until a tool result comes back.
    llm = await startFakeLlm({
      respond: (r) => {
        const msgs = messagesOf(r);
        const last = msgs.at(-1);
        if (last?.role === 'tool') return { text: `it is sunny (${String(last.content).includes('21C') ? 'saw 21C' : '?'})` };
        if (Array.isArray(last?.content) && (last.content as Array<{ type?: string }>).some((b) => b.type === 'tool_result'))
          return { text: 'anthropic saw the result' };
        // Only the client's tool is called (Talon's own memory tools, offered without client tools, are not).
        const weather = offeredTools(r).some((t) => t.name === 'get_weather');
        return weather ? { toolCalls: [{ id: 'call_w1', name: 'get_weather', arguments: { city: 'Paris' } }] } : undefined;
      },
    });
    const target = (provider: string) => ({ provider, base_url: llm.url, model: `${provider}-upstream`, key: 'none' });
    tp = await startTestPlatform({
      llm: false,
      database: 'embedded',
      services: ['vault', 'egress', 'memory', 'orchestrator', 'gateway'],
      env: {
        TALON_LLM_MODELS: JSON.stringify([
          { name: 'blind', targets: [target('openai')] },
          { name: 'seeing', vision: true, targets: [target('openai')] },
          { name: 'claude', vision: true, targets: [target('anthropic')] },
        ]),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${llm.port}`,
        GATEWAY_API_MAX_IMAGE_BYTES: String(MAX_IMAGE),
      },
    });
    token = await tp.token('mia');
    client = new OpenAI({ apiKey: token, baseURL: `${tp.gatewayUrl}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await tp?.stop();
    await llm?.close();
  });

  it('passes the client tools to the provider and returns its tool calls (not streamed)', async () => {
    const n = llm.requests.length;
    const c = await client.chat.completions.create({
      model: 'blind',
      messages: [{ role: 'user', content: 'weather in Paris?' }],
      tools: [WEATHER],
      tool_choice: 'required',
    });
    assert.equal(c.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(c.choices[0]!.message.content, null);
    assert.deepEqual(c.choices[0]!.message.tool_calls, [
      { id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ]);
    const sent = llm.requests.slice(n);
    assert.equal(sent.length, 1, 'one model call: Talon runs no client tool');
    // Only the client's tools: none of Talon's own (memory_save, skills).
    assert.deepEqual(offeredTools(sent[0]!), [
      { name: 'get_weather', description: 'The weather in a city', parameters: WEATHER.function.parameters },
    ]);
    assert.equal(sent[0]!.body.tool_choice, 'required');
  });

  it('streams tool calls as delta.tool_calls fragments, then finish_reason tool_calls', async () => {
    const stream = await client.chat.completions.create({
      model: 'blind',
      stream: true,
      messages: [{ role: 'user', content: 'weather in Paris, streamed?' }],
      tools: [WEATHER],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const calls: Array<{ index: number; id?: string; type?: string; name?: string; arguments?: string }> = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? [])
        calls.push({ index: d.index, id: d.id, type: d.type, name: d.function?.name, arguments: d.function?.arguments });
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, 'tool_calls');
    assert.deepEqual(calls[0], { index: 0, id: 'call_w1', type: 'function', name: 'get_weather', arguments: '' });
    assert.equal(
      calls
        .filter((c) => c.index === 0)
        .map((c) => c.arguments ?? '')
        .join(''),
      '{"city":"Paris"}',
    );
    assert.deepEqual(llm.requests.at(-1)!.body.tool_choice, { type: 'function', function: { name: 'get_weather' } });
  });

  it('sends the tool result back in the next request (OpenAI and Anthropic wire formats)', async () => {
    const history: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_w1', content: 'sunny, 21C' },
    ];
    const c = await client.chat.completions.create({ model: 'blind', messages: history, tools: [WEATHER] });
    assert.equal(c.choices[0]!.finish_reason, 'stop');
    assert.equal(c.choices[0]!.message.content, 'it is sunny (saw 21C)');
    const msgs = messagesOf(llm.requests.at(-1)!);
    const call = msgs.find((m) => m.role === 'assistant');
    assert.deepEqual(call?.tool_calls, [
      { id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ]);
    const result = msgs.at(-1)!;
    assert.equal(result.role, 'tool');
    assert.equal(result.tool_call_id, 'call_w1');
    assert.match(String(result.content), /<untrusted source="tool">[\s\S]*sunny, 21C/, 'tool output is data, never instructions');

    // The same history to an Anthropic-format provider: tool_use and tool_result blocks.
    const a = await client.chat.completions.create({ model: 'claude', messages: history, tools: [WEATHER] });
    assert.equal(a.choices[0]!.message.content, 'anthropic saw the result');
    const sent = llm.requests.at(-1)!;
    assert.ok(sent.path.endsWith('/messages'));
    const blocks = (messagesOf(sent) as Array<{ role: string; content: Array<Record<string, unknown>> }>).flatMap(
      (m): Array<Record<string, unknown>> => (Array.isArray(m.content) ? m.content.map((b) => ({ role: m.role, ...b })) : []),
    );
    assert.ok(blocks.some((b) => b.role === 'assistant' && b.type === 'tool_use' && b.id === 'call_w1' && b.name === 'get_weather'));
    assert.ok(blocks.some((b) => b.role === 'user' && b.type === 'tool_result' && b.tool_use_id === 'call_w1'));
    assert.deepEqual(
      (sent.body.tools as Array<{ name: string }>).map((t) => t.name),
      ['get_weather'],
    );
  });

  it('never lets a credential in a tool call of the history reach the provider', async () => {
    const c = await client.chat.completions.create({
      model: 'blind',
      messages: [
        { role: 'user', content: 'log in' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_k', type: 'function', function: { name: 'login', arguments: JSON.stringify({ token: LEAK }) } }],
        },
        { role: 'tool', tool_call_id: 'call_k', content: 'ok' },
      ],
      tools: [{ type: 'function', function: { name: 'login', parameters: { type: 'object', properties: {} } } }],
    });
    assert.match(c.choices[0]!.message.content ?? '', /removed from your message/);
    const body = JSON.stringify(llm.requests.at(-1)!.body);
    assert.ok(!body.includes(LEAK), 'the provider never saw the credential');
    assert.match(body, /redacted:github_pat/);
  });

  it('refuses invalid tool definitions with the field at fault, before anything is queued', async () => {
    const n = llm.requests.length;
    const cases: Array<[unknown, string]> = [
      [[{ type: 'function', function: { name: 'bad name!' } }], 'tools[0].function.name'],
      [[WEATHER, { type: 'function', function: { name: 'x', parameters: { type: 'array' } } }], 'tools[1].function.parameters'],
      [Array.from({ length: 129 }, (_, i) => ({ type: 'function', function: { name: `t${i}` } })), 'tools'],
    ];
    for (const [tools, param] of cases) {
      const err = await client.chat.completions
        .create({
          model: 'blind',
          messages: [{ role: 'user', content: 'x' }],
          tools: tools as OpenAI.Chat.Completions.ChatCompletionTool[],
        })
        .then(
          () => assert.fail('accepted'),
          (e: unknown) => e,
        );
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.param, param);
      assert.equal(err.code, 'invalid_value');
      assert.equal(err.type, 'invalid_request_error');
    }
    assert.equal(llm.requests.length, n, 'nothing reached the provider');
  });

  it('gives an image to a vision model, keeping only a placeholder in memory', async () => {
    const conversation = `img-${Date.now()}`;
    const c = await client.chat.completions.create({
      model: 'seeing',
      metadata: { conversation_id: conversation },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is in this picture?' },
            { type: 'image_url', image_url: { url: PNG_URL, detail: 'low' } },
          ],
        },
      ],
    });
    assert.equal(c.choices[0]!.finish_reason, 'stop');
    const user = messagesOf(llm.requests.at(-1)!).at(-1)!;
    assert.deepEqual(user.content, [
      { type: 'text', text: 'what is in this picture?' },
      { type: 'image_url', image_url: { url: PNG_URL, detail: 'low' } },
    ]);
    const stored = await tp.until('the user turn in memory', async () => {
      const res = await fetch(`${tp.gatewayUrl}/v1/conversations/${conversation}/messages`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (res.status !== 200) return undefined;
      const body = (await res.json()) as { messages: Array<{ role: string; content: string }> };
      return body.messages.find((m) => m.role === 'user');
    });
    assert.equal(stored.content, 'what is in this picture?\n[image]');
  });

  it('refuses an image for a model without vision, and an image over the cap', async () => {
    const n = llm.requests.length;
    const ask = (model: string, url: string) =>
      client.chat.completions.create({ model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }] }).then(
        () => assert.fail('accepted'),
        (e: unknown) => e,
      );
    const blind = await ask('blind', PNG_URL);
    assert.ok(blind instanceof OpenAI.BadRequestError, String(blind));
    assert.equal(blind.code, 'model_not_vision_capable');
    assert.equal(blind.param, 'messages');
    const big = `data:image/png;base64,${Buffer.concat([PNG, Buffer.alloc(MAX_IMAGE)]).toString('base64')}`;
    const tooLarge = await ask('seeing', big);
    assert.ok(tooLarge instanceof OpenAI.BadRequestError, String(tooLarge));
    assert.equal(tooLarge.code, 'image_too_large');
    assert.equal(tooLarge.param, 'messages[0].content[0].image_url.url');
    const notImage = await ask('seeing', `data:image/png;base64,${Buffer.from('<script>').toString('base64')}`);
    assert.ok(notImage instanceof OpenAI.BadRequestError);
    assert.equal(llm.requests.length, n, 'nothing reached the provider');
  });
});
