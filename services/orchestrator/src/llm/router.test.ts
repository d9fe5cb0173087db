import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TalonError } from '@talon/kit/errors';
import type { ModelsConfig } from '@talon/kit/models';
import { LlmHttpError } from './client.ts';
import { FailoverClient, ModelRouter, type ProviderClient } from './router.ts';
import type { LlmResult } from './types.ts';

const result = (content: string): LlmResult => ({
  content,
  finishReason: 'stop',
  model: 'upstream',
  usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 },
  toolCalls: [],
});

/** A provider that answers from a script: an error to throw, or text to stream and return. */
function provider(label: string, script: Array<Error | string>): ProviderClient & { calls: number } {
  const p = {
    label,
    model: `${label}-model`,
    calls: 0,
    async complete(_req: unknown, onDelta?: (d: string) => void) {
      const step = script[Math.min(p.calls, script.length - 1)]!;
      p.calls += 1;
      if (step instanceof Error) throw step;
      for (const ch of step) onDelta?.(ch);
      return result(step);
    },
  };
  return p;
}

const warnings: unknown[] = [];
const log = { info: () => undefined, warn: (o: unknown) => void warnings.push(o) };
const req = { messages: [{ role: 'user' as const, content: 'hi' }], stream: true };

describe('FailoverClient', () => {
  it('tries the providers in order past 503 and 429 and says which one answered', async () => {
    const a = provider('a', [new LlmHttpError(503, 'overloaded')]);
    const b = provider('b', [new LlmHttpError(429, 'slow down')]);
    const c = provider('c', ['ok']);
    const deltas: string[] = [];
    const res = await new FailoverClient('m', [a, b, c], log).complete(req, (d) => deltas.push(d));
    assert.equal(res.content, 'ok');
    assert.equal(res.provider, 'c');
    assert.deepEqual([a.calls, b.calls, c.calls], [1, 1, 1]);
    assert.deepEqual(deltas, ['o', 'k']);
    assert.deepEqual(
      warnings.slice(-2).map((w) => (w as { outcome: string; next: string }).outcome + '>' + (w as { next: string }).next),
      ['server_error>b', 'rate_limited>c'],
    );
  });

  it('does not fail over a 400, and throws the last error when every provider failed', async () => {
    const a = provider('a', [new LlmHttpError(400, 'bad request')]);
    const b = provider('b', ['never']);
    await assert.rejects(new FailoverClient('m', [a, b], log).complete(req), (e: unknown) => e instanceof LlmHttpError && e.status === 400);
    assert.equal(b.calls, 0);
    const x = provider('x', [new LlmHttpError(503, '')]);
    const y = provider('y', [new LlmHttpError(502, '')]);
    await assert.rejects(new FailoverClient('m', [x, y], log).complete(req), (e: unknown) => e instanceof LlmHttpError && e.status === 502);
  });

  it('does not splice a second answer onto text already streamed', async () => {
    const broken: ProviderClient = {
      label: 'a',
      model: 'a',
      async complete(_r, onDelta) {
        onDelta?.('half');
        throw new LlmHttpError(502, 'cut');
      },
    };
    const b = provider('b', ['whole']);
    await assert.rejects(
      new FailoverClient('m', [broken, b], log).complete(req, () => undefined),
      LlmHttpError,
    );
    assert.equal(b.calls, 0);
  });
});

describe('ModelRouter', () => {
  const cfg: ModelsConfig = {
    source: 'TALON_LLM_MODELS',
    models: [
      { name: 'smart', targets: [{ label: 'one', format: 'openai', baseUrl: 'https://one.example/v1', model: 'm1', keySecret: 'k1' }] },
      { name: 'fast', targets: [{ label: 'two', format: 'openai', baseUrl: 'https://two.example/v1', model: 'm2', keySecret: undefined }] },
    ],
  };
  const router = new ModelRouter(cfg, (t) => provider(t.label, [t.model]), log);

  it('selects by name, the first for none or "talon", and refuses an unknown model with model_not_found', async () => {
    assert.equal(router.defaultModel, 'smart');
    assert.equal(router.select('fast').name, 'fast');
    assert.equal((await router.select('fast').complete(req)).content, 'm2');
    assert.equal(router.select('').name, 'smart');
    assert.equal(router.select('talon').name, 'smart');
    assert.throws(
      () => router.select('gpt-5'),
      (e: unknown) => e instanceof TalonError && e.code === 'model_not_found' && /`gpt-5` does not exist/.test(e.message),
    );
  });
  it("chains an agent's models: each model's providers in order, one failover client answering as the agent", async () => {
    const failing = new ModelRouter(cfg, (t) => provider(t.label, [t.label === 'two' ? new LlmHttpError(500, 'down') : t.model]), log);
    const chain = failing.chain('research', ['fast', 'smart']);
    assert.equal(chain.name, 'research');
    const out = await chain.complete(req);
    assert.equal(out.content, 'm1', 'fast answered 500, smart answered');
    assert.equal(out.provider, 'one');
    assert.equal(failing.chain('research', ['fast', 'smart']), chain, 'built once');
    assert.throws(
      () => failing.chain('x', ['fast', 'gpt-5']),
      (e: unknown) => e instanceof TalonError && e.code === 'model_not_found',
    );
  });
});
