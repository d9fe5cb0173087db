// Agent profiles end to end (talon agents): the whole platform (no sandbox), two fake
// LLM providers behind two named models, and a fake remote MCP server.
//   - with no profile, a turn is the default agent's: TALON_SYSTEM_PROMPT, the default
//     model, every approved tool — as before profiles existed;
//   - `talon agents add` refuses an unknown model and a taken name, saying what to do;
//     /v1/models lists the agents after the models, an unknown name stays 404;
//   - routing: a channel route (api), a user route beating it, `@name` (stripped before the
//     model sees the message), and the OpenAI API's `model: <agent>`;
//   - an agent's prompt and model chain are used, and its failover list when its first
//     provider answers 500; an MCP tool the agent is not allowed is not offered;
//   - memory: an agent sharing another's memory recalls what was said to it; an agent with
//     its own memory does not.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
  offeredTools,
  receivedTexts,
  startFakeLlm,
  startFakeMcpServer,
  startTestPlatform,
  type FakeLlm,
  type FakeMcpServer,
  type RecordedLlmRequest,
  type TestPlatform,
} from '@talon/testkit';

const lastUser = (req: RecordedLlmRequest) => [...receivedTexts(req)].reverse().find((m) => m.role === 'user')?.text ?? '';
const systemText = (req: RecordedLlmRequest) =>
  receivedTexts(req)
    .filter((m) => m.role === 'system')
    .map((m) => m.text)
    .join('\n');
const allText = (req: RecordedLlmRequest) =>
  receivedTexts(req)
    .map((m) => m.text)
    .join('\n');
const offered = (req: RecordedLlmRequest) => offeredTools(req).map((t) => t.name);

describe('agent profiles, end to end', () => {
  let first: FakeLlm;
  let second: FakeLlm;
  let mcp: FakeMcpServer;
  let tp: TestPlatform;
  let alice: string;
  let bob: string;
  let models: string;

  const talon = (args: string[]) => tp.cliAsync(args, undefined, { TALON_LLM_MODELS: models });
  const ok = async (args: string[]) => {
    const r = await talon(args);
    assert.equal(r.code, 0, `talon ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  /** One turn through the API; returns the answer and the request the provider that answered received. */
  const say = async (token: string, conversation: string, content: string, model?: string) => {
    const before = { a: first.requests.length, b: second.requests.length };
    const res = await tp.chat(
      token,
      { ...(model ? { model } : {}), messages: [{ role: 'user', content }] },
      { 'x-talon-conversation': conversation },
    );
    assert.equal(res.status, 200, res.text);
    const fromFirst = first.requests.slice(before.a);
    const fromSecond = second.requests.slice(before.b);
    return {
      answer: String(res.json.choices[0].message.content),
      model: String(res.json.model),
      first: fromFirst,
      second: fromSecond,
      /** The last request of the provider that answered. */
      req: (fromSecond.at(-1) ?? fromFirst.at(-1))!,
    };
  };

  before(async () => {
    first = await startFakeLlm({ reply: (r) => `first: ${lastUser(r)}` });
    second = await startFakeLlm({ reply: (r) => `second: ${lastUser(r)}` });
    mcp = await startFakeMcpServer({ token: 'unused-token' });
    const target = (llm: FakeLlm, model: string, label: string) => ({ provider: 'openai', base_url: llm.url, model, key: 'none', label });
    models = JSON.stringify([
      { name: 'fast', targets: [target(first, 'model-a', 'first')] },
      { name: 'smart', targets: [target(second, 'model-b', 'second')] },
    ]);
    tp = await startTestPlatform({
      llm: false,
      database: 'embedded',
      services: ['vault', 'egress', 'memory', 'orchestrator', 'gateway'],
      env: {
        TALON_LLM_MODELS: models,
        TALON_SYSTEM_PROMPT: 'You are the DEFAULT agent.',
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${first.port},127.0.0.1:${second.port},127.0.0.1:${mcp.port}`,
        ORCHESTRATOR_MCP_TOOLS_TTL_MS: '0',
      },
    });
    alice = await tp.token('alice');
    bob = await tp.token('bob');
    await ok(['mcp', 'add', 'docs', '--url', mcp.url]);
    await ok(['mcp', 'approve', 'docs']);
  });

  after(async () => {
    await tp?.stop();
    await first?.close();
    await second?.close();
    await mcp?.close();
  });

  it('with no agents, a turn is the default agent’s, exactly as before', async () => {
    assert.match(await ok(['agents', 'list']), /No agents: every turn is answered by the default agent/);
    const t = await say(alice, 'plain', '@coder hello');
    assert.equal(t.answer, 'first: @coder hello', 'no agent: the text is not touched');
    assert.equal(t.second.length, 0);
    assert.match(systemText(t.req), /You are the DEFAULT agent\./);
    assert.equal(t.req.body.model, 'model-a');
    assert.ok(offered(t.req).includes('mcp_docs_echo'), `the default agent has every approved tool: ${offered(t.req).join(', ')}`);
  });

  it('talon agents add refuses an unknown model and a taken name; adds and lists profiles', async () => {
    const bad = await talon(['agents', 'add', 'oops', '--model', 'gpt-9', '--prompt', 'x']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /model "gpt-9" is not in TALON_LLM_MODELS; available: fast, smart/);
    const noShare = await talon(['agents', 'add', 'scribe', '--model', 'smart', '--prompt', 'x', '--memory', 'shared:research']);
    assert.equal(noShare.code, 1);
    assert.match(noShare.stderr, /names no agent; add research first/);

    await ok(['agents', 'add', 'coder', '--model', 'fast', '--prompt', 'You are CODER.', '--route', 'channel:api']);
    await ok([
      'agents',
      'add',
      'research',
      '--model',
      'smart',
      '--failover',
      'fast',
      '--prompt',
      'You are RESEARCH.',
      '--mcp',
      'docs',
      '--route',
      'user:bob',
    ]);
    await ok(['agents', 'add', 'scribe', '--model', 'smart', '--prompt', 'You are SCRIBE.', '--memory', 'shared:research']);
    const taken = await talon(['agents', 'add', 'coder', '--model', 'fast', '--prompt', 'again']);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /an agent named coder exists already: change it with `talon agents edit coder/);
    const list = await ok(['agents', 'list']);
    assert.match(list, /^coder {2}model=fast {2}skills=none {2}mcp=none {2}memory=own {2}routes=channel:api$/m);
    assert.match(list, /^research {2}model=smart>fast {2}skills=none {2}mcp=docs {2}memory=own {2}routes=user:bob$/m);
    assert.match(list, /^scribe {2}model=smart .* memory=shared:research {2}routes=-$/m);
    const rm = await talon(['agents', 'rm', 'research']);
    assert.equal(rm.code, 1);
    assert.match(rm.stderr, /scribe share research's memory/);
  });

  it('the OpenAI API lists agents as models and accepts one as `model`; an unknown name stays 404', async () => {
    const client = new OpenAI({ apiKey: alice, baseURL: `${tp.gatewayUrl}/v1`, maxRetries: 0 });
    const ids = await tp.until('the gateway lists the agents', async () => {
      const l = (await client.models.list()).data.map((m) => m.id);
      return l.includes('scribe') && l;
    });
    assert.deepEqual(ids, ['fast', 'smart', 'coder', 'research', 'scribe']);
    assert.equal((await client.models.retrieve('research')).id, 'research');
    await assert.rejects(client.models.retrieve('nope'), (e: any) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
    await assert.rejects(
      client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
      (e: any) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
    );
    // The orchestrator reads the profiles too (briefly cached): wait until it answers as the agent.
    const c = await tp.until('the orchestrator routes to research', async () => {
      const r = await client.chat.completions.create({ model: 'research', messages: [{ role: 'user', content: 'who are you?' }] });
      return systemText(second.requests.at(-1)!).includes('You are RESEARCH.') && r;
    });
    assert.equal(c.model, 'research', 'the name the client asked for');
    assert.equal(c.choices[0]!.message.content, 'second: who are you?');
    assert.equal(second.requests.at(-1)!.body.model, 'model-b');
  });

  it('routes by channel, by user (beating the channel), and by @name, which is stripped', async () => {
    const byChannel = await say(alice, 'route-1', 'hello there');
    assert.equal(byChannel.answer, 'first: hello there');
    assert.match(systemText(byChannel.req), /You are CODER\./);
    assert.ok(!systemText(byChannel.req).includes('DEFAULT'));

    const byUser = await say(bob, 'route-2', 'hello there');
    assert.equal(byUser.answer, 'second: hello there');
    assert.match(systemText(byUser.req), /You are RESEARCH\./);
    assert.equal(byUser.req.body.model, 'model-b', 'the agent’s model, not the default');

    const byMention = await say(alice, 'route-3', '@research: what is new?');
    assert.equal(byMention.answer, 'second: what is new?', 'the @name prefix never reaches the model');
    assert.match(systemText(byMention.req), /You are RESEARCH\./);
    assert.ok(!allText(byMention.req).includes('@research'));
  });

  it('offers an agent only the MCP tools it is allowed', async () => {
    const coder = await say(alice, 'tools-1', 'list your tools');
    assert.match(systemText(coder.req), /You are CODER\./);
    assert.ok(!offered(coder.req).some((n) => n.startsWith('mcp_')), `coder was offered: ${offered(coder.req).join(', ')}`);
    assert.ok(offered(coder.req).includes('memory_search'), 'the built-in memory tools stay');
    const research = await say(bob, 'tools-2', 'list your tools');
    assert.ok(offered(research.req).includes('mcp_docs_echo'), `research was offered: ${offered(research.req).join(', ')}`);
  });

  it('uses the agent’s failover list when its first provider answers 500', async () => {
    second.behaviour = { ...second.behaviour, status: () => 500 };
    try {
      const t = await say(bob, 'failover', 'are you there?');
      assert.equal(t.second.length, 1, 'smart was tried first');
      assert.equal(t.answer, 'first: are you there?', 'fast answered');
      assert.match(systemText(t.first.at(-1)!), /You are RESEARCH\./);
      assert.equal(t.first.at(-1)!.body.model, 'model-a');
      // Coder has no failover: the same outage is its own model's business only (fast is up).
      assert.equal((await say(alice, 'failover-2', 'still fine?')).answer, 'first: still fine?');
    } finally {
      second.behaviour = { reply: (r) => `second: ${lastUser(r)}` };
    }
    await tp.until('the failover in the orchestrator log', () =>
      /"model":"smart","provider":"second","outcome":"server_error","next":"first"/.test(tp.log('orchestrator')),
    );
  });

  it('keeps memory per scope: a shared scope recalls, an own scope does not', async () => {
    await say(bob, 'facts', 'Remember this: the locker code is PAPAYA-7781.');
    const shared = await say(bob, 'ask-scribe', '@scribe What is the locker code?');
    assert.match(systemText(shared.req), /You are SCRIBE\./);
    assert.match(allText(shared.req), /PAPAYA-7781/, 'scribe shares research’s memory');
    const own = await say(bob, 'ask-coder', '@coder What is the locker code?');
    assert.match(systemText(own.req), /You are CODER\./);
    assert.ok(!allText(own.req).includes('PAPAYA'), 'coder’s memory is its own');
    // The turns are kept in the conversation's thread, suffixed with the scope.
    const convs = await fetch(`${tp.gatewayUrl}/v1/conversations`, { headers: { authorization: `Bearer ${bob}` } });
    const text = JSON.stringify(await convs.json());
    assert.match(text, /facts\+agent:research/);
    assert.match(text, /ask-coder\+agent:coder/);
    assert.match(text, /ask-scribe\+agent:research/);
  });

  it('edit and rm change the routing at once for new turns', async () => {
    await ok(['agents', 'edit', 'coder', '--clear-routes']);
    await ok(['agents', 'rm', 'scribe']);
    const t = await tp.until('coder no longer has the api channel', async () => {
      const r = await say(alice, 'after-edit', 'and now?');
      return systemText(r.req).includes('DEFAULT') && r;
    });
    assert.equal(t.answer, 'first: and now?');
    const list = await ok(['agents', 'list']);
    assert.ok(!list.includes('scribe'));
  });
});
