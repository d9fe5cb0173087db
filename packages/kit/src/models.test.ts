import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './config.ts';
import {
  keyBindings,
  llmModelFields,
  modelNotFound,
  modelsConfig,
  parseModels,
  providerBaseUrls,
  resolveModel,
  type ModelsConfig,
} from './models.ts';

const openai = { provider: 'openai', base_url: 'https://api.openai.com/v1', model: 'gpt-4o', key: 'openai_key' };
const anthropic = { provider: 'anthropic', base_url: 'https://api.anthropic.com/v1', model: 'claude-sonnet-4-5', key: 'anthropic_key' };
const doc = (v: unknown) => JSON.stringify(v);

function load(env: Record<string, string>): ModelsConfig {
  return modelsConfig(loadConfig('test', llmModelFields(), env));
}

describe('parseModels', () => {
  it('reads models in order, each with its ordered targets', () => {
    const models = parseModels(
      doc([
        { name: 'smart', targets: [anthropic, { ...openai, label: 'openai-backup' }] },
        { name: 'local', targets: [{ provider: 'openai', base_url: 'http://127.0.0.1:11434/v1', model: 'llama3.1:8b', key: 'none' }] },
      ]),
    );
    assert.deepEqual(
      models.map((m) => [m.name, m.targets.map((t) => `${t.label}/${t.format}/${t.model}/${t.keySecret ?? '-'}`)]),
      [
        ['smart', ['anthropic/anthropic/claude-sonnet-4-5/anthropic_key', 'openai-backup/openai/gpt-4o/openai_key']],
        ['local', ['openai/openai/llama3.1:8b/-']],
      ],
    );
  });

  it('reads the vision flag (default off) and refuses a non-boolean one', () => {
    const [seeing, blind] = parseModels(
      doc([
        { name: 'seeing', vision: true, targets: [openai] },
        { name: 'blind', targets: [openai] },
      ]),
    );
    assert.equal(seeing?.vision, true);
    assert.equal(blind?.vision, undefined);
    assert.throws(() => parseModels(doc([{ name: 'x', vision: 'yes', targets: [openai] }])), /models\[0\]\.vision must be true or false/);
  });

  it('names the place of every kind of mistake', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{}, /must be a JSON list of 1 to 64 models/],
      [[], /must be a JSON list/],
      [[{ name: 'a b', targets: [openai] }], /models\[0\]\.name must be 1-128 characters/],
      [[{ name: 'a', targets: [] }], /models\[0\]\.targets must be a list of 1 to 8 providers/],
      [[{ name: 'a', targets: [openai], extra: 1 }], /models\[0\] has an unknown field "extra"/],
      [[{ name: 'a', targets: [{ ...openai, baseUrl: 'x' }] }], /models\[0\]\.targets\[0\] has an unknown field "baseUrl"/],
      [[{ name: 'a', targets: [{ ...openai, provider: 'gemini' }] }], /targets\[0\]\.provider must be one of openai, anthropic/],
      [[{ name: 'a', targets: [{ ...openai, base_url: 'ftp://x' }] }], /targets\[0\]\.base_url must be an absolute http/],
      [[{ name: 'a', targets: [{ ...openai, base_url: 'https://u:p@x/v1' }] }], /base_url must not carry credentials/],
      [[{ name: 'a', targets: [{ ...openai, base_url: 'https://x/v1?k=1' }] }], /base_url must have no query/],
      [[{ name: 'a', targets: [{ ...openai, model: 'gpt 4' }] }], /targets\[0\]\.model must be the provider's model name/],
      [[{ name: 'a', targets: [{ ...openai, key: 'Bad-Name' }] }], /targets\[0\]\.key must name the vault secret/],
      [[{ name: 'a', targets: [{ ...openai, key: undefined }] }], /targets\[0\]\.key must name the vault secret/],
      [[{ name: 'a', targets: [{ ...openai, label: 'UP' }] }], /targets\[0\]\.label must be/],
      [
        [{ name: 'a', targets: [openai, { ...openai, base_url: 'https://other.example/v1' }] }],
        /targets\[1\] has the label openai of an earlier target/,
      ],
      [
        [
          { name: 'a', targets: [openai] },
          { name: 'a', targets: [anthropic] },
        ],
        /models\[1\]\.name a is used by an earlier model/,
      ],
      [
        [
          { name: 'a', targets: [openai] },
          { name: 'b', targets: [{ ...anthropic, key: 'openai_key' }] },
        ],
        /models\[1\]\.targets\[0\] uses key openai_key with provider anthropic \(x-api-key\) but models\[0\]\.targets\[0\] uses it with openai/,
      ],
    ];
    for (const [value, message] of bad) assert.throws(() => parseModels(doc(value)), message, doc(value));
    assert.throws(() => parseModels('[{'), /is not valid JSON/);
  });
});

describe('TALON_LLM_MODELS and the TALON_LLM_* variables', () => {
  it('without TALON_LLM_MODELS, one model from the older variables, named after TALON_LLM_MODEL', () => {
    const cfg = load({ TALON_LLM_PROVIDER: 'anthropic', TALON_LLM_BASE_URL: 'https://api.anthropic.com/v1', TALON_LLM_MODEL: 'claude-x' });
    assert.equal(cfg.source, 'TALON_LLM_*');
    assert.deepEqual(cfg.models, [
      {
        name: 'claude-x',
        targets: [
          { label: 'anthropic', format: 'anthropic', baseUrl: 'https://api.anthropic.com/v1', model: 'claude-x', keySecret: 'llm_api_key' },
        ],
      },
    ]);
    assert.equal(load({ TALON_LLM_API_KEY_SECRET: 'none' }).models[0]!.targets[0]!.keySecret, undefined);
  });

  it('takes the list inline or from an absolute file path, and refuses anything else precisely', () => {
    const list = doc([{ name: 'fast', targets: [openai] }]);
    assert.deepEqual(
      load({ TALON_LLM_MODELS: list }).models.map((m) => m.name),
      ['fast'],
    );
    const dir = mkdtempSync(join(tmpdir(), 'talon-models-'));
    try {
      const file = join(dir, 'models.json');
      writeFileSync(file, list);
      assert.equal(load({ TALON_LLM_MODELS: file }).source, 'TALON_LLM_MODELS');
      const problem = (v: string) => {
        try {
          load({ TALON_LLM_MODELS: v });
        } catch (err) {
          assert.ok(err instanceof ConfigError);
          return err.message;
        }
        assert.fail(`accepted ${v}`);
      };
      assert.match(problem('models.json'), /TALON_LLM_MODELS: is neither a JSON list nor an absolute file path/);
      assert.match(problem(join(dir, 'missing.json')), /TALON_LLM_MODELS: cannot read .*missing\.json/);
      assert.match(problem('[{"name":"x","targets":[]}]'), /TALON_LLM_MODELS: models\[0\]\.targets must be/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a TALON_LLM_MODEL that cannot be a public model name', () => {
    assert.throws(() => load({ TALON_LLM_MODEL: 'my model' }), /TALON_LLM_MODEL: expected a model name/);
  });
});

describe('resolveModel, hosts and key bindings', () => {
  const cfg = load({
    TALON_LLM_MODELS: doc([
      { name: 'smart', targets: [anthropic, { ...openai, label: 'backup' }] },
      {
        name: 'fast',
        targets: [
          { ...openai, base_url: 'https://api.openai.com:8443/v1' },
          { ...openai, label: 'two', base_url: 'https://proxy.example/v1' },
        ],
      },
    ]),
  });

  it('finds a model by exact name; no name and "talon" mean the first one', () => {
    assert.equal(resolveModel(cfg, 'fast')?.name, 'fast');
    assert.equal(resolveModel(cfg, '')?.name, 'smart');
    assert.equal(resolveModel(cfg, 'talon')?.name, 'smart');
    assert.equal(resolveModel(cfg, 'FAST'), undefined);
    assert.equal(resolveModel(cfg, 'gpt-4o'), undefined);
    const named = load({
      TALON_LLM_MODELS: doc([
        { name: 'a', targets: [openai] },
        { name: 'talon', targets: [anthropic] },
      ]),
    });
    assert.equal(resolveModel(named, 'talon')?.name, 'talon');
  });

  it('answers an unknown model as OpenAI does, echoing only a well-formed name', () => {
    const e = modelNotFound(cfg, 'gpt-5');
    assert.equal(e.code, 'model_not_found');
    assert.equal(e.httpStatus, 404);
    assert.equal(e.message, 'The model `gpt-5` does not exist; this deployment offers smart, fast (GET /v1/models)');
    assert.doesNotMatch(modelNotFound(cfg, 'x y <script>').message, /script/);
  });

  it('lists every provider base URL once and binds each key to all its hosts', () => {
    assert.deepEqual(providerBaseUrls(cfg), [
      'https://api.anthropic.com/v1',
      'https://api.openai.com/v1',
      'https://api.openai.com:8443/v1',
      'https://proxy.example/v1',
    ]);
    assert.deepEqual(keyBindings(cfg), [
      { secret: 'anthropic_key', hosts: ['api.anthropic.com'], format: 'anthropic' },
      { secret: 'openai_key', hosts: ['api.openai.com', 'api.openai.com:8443', 'proxy.example'], format: 'openai' },
    ]);
  });
});
