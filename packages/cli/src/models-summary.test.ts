import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@talon/kit/config';
import { llmModelFields, modelsConfig } from '@talon/kit/models';
import { keyCommands, modelLines } from './models-summary.ts';

describe('talon up: models and keys', () => {
  it('shows the one model of the TALON_LLM_* variables and its key as before', () => {
    const cfg = modelsConfig(loadConfig('talon', llmModelFields(), {}));
    assert.deepEqual(modelLines(cfg), ['gpt-4o-mini (default): openai api.openai.com gpt-4o-mini']);
    assert.deepEqual(keyCommands(cfg), ['npm run talon -- secrets set llm_api_key --host api.openai.com']);
  });

  it('binds each key to every host that uses it, in its placement; keyless targets need none', () => {
    const models = [
      {
        name: 'smart',
        targets: [
          { provider: 'anthropic', base_url: 'https://api.anthropic.com/v1', model: 'claude-sonnet-4-5', key: 'anthropic_key' },
          { provider: 'openai', base_url: 'https://api.openai.com/v1', model: 'gpt-4o', key: 'openai_key' },
        ],
      },
      {
        name: 'fast',
        targets: [
          { provider: 'openai', base_url: 'https://gw.example:8443/v1', model: 'gpt-4o-mini', key: 'openai_key' },
          { provider: 'openai', base_url: 'http://127.0.0.1:11434/v1', model: 'llama3.1', key: 'none', label: 'local' },
        ],
      },
    ];
    const cfg = modelsConfig(loadConfig('talon', llmModelFields(), { TALON_LLM_MODELS: JSON.stringify(models) }));
    assert.deepEqual(modelLines(cfg), [
      'smart (default): anthropic api.anthropic.com claude-sonnet-4-5 > openai api.openai.com gpt-4o',
      'fast: openai gw.example:8443 gpt-4o-mini > local 127.0.0.1:11434 llama3.1',
    ]);
    assert.deepEqual(keyCommands(cfg), [
      'npm run talon -- secrets set anthropic_key --host api.anthropic.com --header x-api-key',
      'npm run talon -- secrets set openai_key --host api.openai.com,gw.example:8443',
    ]);
  });
});
