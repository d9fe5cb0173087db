// Named models with ordered provider failover, through the real pipeline: two fake
// providers on loopback, each reached through egress with its own vault key
// (TALON_LLM_MODELS). The first one failing with 503 or 429 hands the turn to the
// second; a 400 is not failed over. The OpenAI API lists the configured names,
// answers an unknown model 404 model_not_found before anything is queued, and names
// the requested model in every chunk.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import OpenAI from 'openai';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '@talon/kit/subjects';
import { REPO_ROOT } from '@talon/cli/platform';
import {
  sampleSum,
  scrape,
  startFakeLlm,
  startTestPlatform,
  type FakeLlm,
  type RecordedLlmRequest,
  type TestPlatform,
} from '@talon/testkit';

const PASSPHRASE = `models-${randomBytes(8).toString('hex')}`;
const KEY_A = `sk-first-${randomBytes(12).toString('hex')}`;
const KEY_B = `sk-second-${randomBytes(12).toString('hex')}`;

describe('named models and provider failover', () => {
  let first: FakeLlm;
  let second: FakeLlm;
  let tp: TestPlatform;
  let client: OpenAI;

  const cli = (args: string[], input: string) =>
    spawnSync(process.execPath, [join(REPO_ROOT, 'packages/cli/src/bin.ts'), ...args], {
      input,
      encoding: 'utf8',
      env: { ...process.env, TALON_HOME: tp.home, VAULT_GRPC_PORT: String(tp.ports.grpc.vault), TALON_NATS_URL: tp.platform.natsUrl },
    });
  /** What a provider saw: the key egress filled in and the upstream model name. */
  const seen = (r: RecordedLlmRequest) => ({ authorization: r.headers.authorization, model: r.body.model });
  const inboundQueued = async () => (await (await jetstreamManager(await tp.admin())).streams.info(STREAMS.inbound.name)).state.last_seq;

  before(async () => {
    first = await startFakeLlm();
    second = await startFakeLlm({
      reply: (r) => `second says: ${String((r.body.messages as Array<{ content: string }>).at(-1)?.content)}`,
    });
    const target = (llm: FakeLlm, model: string, key: string, label: string) => ({
      provider: 'openai',
      base_url: llm.url,
      model,
      key,
      label,
    });
    tp = await startTestPlatform({
      llm: false,
      database: 'embedded',
      services: ['vault', 'egress', 'memory', 'orchestrator', 'gateway'],
      env: {
        TALON_LLM_MODELS: JSON.stringify([
          { name: 'primary', targets: [target(first, 'model-a', 'key_a', 'first'), target(second, 'model-b', 'key_b', 'second')] },
          { name: 'solo', targets: [target(second, 'model-b', 'key_b', 'second')] },
        ]),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${first.port},127.0.0.1:${second.port}`,
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
      },
    });
    // Each key is bound to its own provider's host only: egress fills it nowhere else.
    for (const [name, value, llm] of [
      ['key_a', KEY_A, first],
      ['key_b', KEY_B, second],
    ] as const) {
      const r = cli(['secrets', 'set', name, '--host', `127.0.0.1:${llm.port}`, '--bearer'], `${value}\n`);
      assert.equal(r.status, 0, r.stderr);
    }
    await tp.egressCaughtUpWithVault();
    client = new OpenAI({ apiKey: await tp.token('mia'), baseURL: `${tp.gatewayUrl}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await tp?.stop();
    await first?.close();
    await second?.close();
  });

  it('the first provider answering 503, then 429: each turn is answered by the second, each provider with its own key', async () => {
    for (const status of [503, 429]) {
      const [a, b] = [first.requests.length, second.requests.length];
      first.behaviour = { status: () => status };
      const c = await client.chat.completions.create({ model: 'primary', messages: [{ role: 'user', content: `after ${status}` }] });
      assert.equal(c.choices[0]!.message.content, `second says: after ${status}`);
      assert.equal(c.model, 'primary', 'the requested name, not the upstream one');
      assert.deepEqual(first.requests.slice(a).map(seen), [{ authorization: `Bearer ${KEY_A}`, model: 'model-a' }]);
      assert.deepEqual(second.requests.slice(b).map(seen), [{ authorization: `Bearer ${KEY_B}`, model: 'model-b' }]);
    }
    // Which provider answered, by its configured label: one failure each for 503 and 429, two answers.
    const m = await scrape(`${tp.platform.internalUrl('orchestrator')}/metrics`);
    const calls = (provider: string, outcome: string) =>
      sampleSum(m, 'talon_llm_requests_total', { provider, model: provider === 'first' ? 'model-a' : 'model-b', outcome });
    assert.equal(calls('first', 'server_error'), 1);
    assert.equal(calls('first', 'rate_limited'), 1);
    assert.equal(calls('second', 'ok'), 2);
    await tp.until('the failover in the orchestrator log', () =>
      /"provider":"first","outcome":"server_error","next":"second".*LLM provider failed; trying the next one/.test(tp.log('orchestrator')),
    );
    // The orchestrator only ever held placeholders: no key in its log.
    for (const log of ['orchestrator', 'gateway']) assert.ok(!tp.log(log).includes(KEY_A) && !tp.log(log).includes(KEY_B), log);
  });

  it('a 400 from the first provider is not failed over: the next one would refuse the same request', async () => {
    first.behaviour = { status: () => 400 };
    const b = second.requests.length;
    await assert.rejects(
      client.chat.completions.create({ model: 'primary', messages: [{ role: 'user', content: 'bad request' }] }),
      (e: any) => {
        assert.equal(e.status, 502, String(e.message));
        assert.equal(e.error?.code ?? e.code, 'llm_error');
        return true;
      },
    );
    assert.equal(second.requests.length, b, 'the second provider was not asked');
    first.behaviour = {};
  });

  it('models.list() names the configured models; models.retrieve() finds one or answers 404', async () => {
    const list = await client.models.list();
    assert.deepEqual(
      list.data.map((m) => [m.id, m.object]),
      [
        ['primary', 'model'],
        ['solo', 'model'],
      ],
    );
    assert.equal((await client.models.retrieve('solo')).id, 'solo');
    await assert.rejects(client.models.retrieve('nope'), (e: any) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
    // An id that does not decode names no model: the same 404, not a server error.
    const raw = await fetch(`${tp.gatewayUrl}/v1/models/%E0%A4%A`, { headers: { authorization: `Bearer ${client.apiKey}` } });
    assert.equal(raw.status, 404);
    assert.equal(((await raw.json()) as { error: { code: string } }).error.code, 'model_not_found');
  });

  it('an unknown model is 404 model_not_found, as OpenAI answers, and nothing is queued or sent to a provider', async () => {
    const before = { queued: await inboundQueued(), a: first.requests.length, b: second.requests.length };
    for (const stream of [false, true]) {
      await assert.rejects(
        client.chat.completions.create({ model: 'gpt-5', stream, messages: [{ role: 'user', content: 'hello?' }] }),
        (e: any) => {
          assert.ok(e instanceof OpenAI.NotFoundError, String(e));
          assert.equal(e.status, 404);
          assert.equal(e.code, 'model_not_found');
          assert.equal(e.type, 'invalid_request_error');
          assert.equal(e.param, 'model');
          assert.match(e.message, /The model `gpt-5` does not exist; this deployment offers primary, solo/);
          return true;
        },
      );
    }
    assert.deepEqual({ queued: await inboundQueued(), a: first.requests.length, b: second.requests.length }, before);
  });

  it('a streamed completion names the requested model in every chunk, through a failover too', async () => {
    for (const [model, failing] of [
      ['solo', false],
      ['primary', true],
      ['talon', true],
    ] as const) {
      first.behaviour = failing ? { status: () => 503 } : {};
      const stream = await client.chat.completions.create({
        model,
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: `stream ${model}` }],
      });
      const names = new Set<string>();
      let text = '';
      let chunks = 0;
      for await (const ch of stream) {
        chunks += 1;
        names.add(ch.model);
        text += ch.choices[0]?.delta?.content ?? '';
      }
      assert.ok(chunks > 3, `${model}: ${chunks} chunks`);
      assert.deepEqual([...names], [model]);
      assert.equal(text, `second says: stream ${model}`);
    }
    first.behaviour = {};
  });
});
