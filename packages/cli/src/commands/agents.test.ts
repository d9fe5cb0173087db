import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyOptions, knownModels, profileFromOptions } from './agents.ts';

const opts = { now: 1000, by: 'cli:op', models: ['fast', 'smart', 'cheap'] };

describe('talon agents add/edit: the profile it writes', () => {
  it('builds a profile from the options', () => {
    const p = profileFromOptions(
      'research',
      {
        prompt: ' You research. ',
        model: 'smart',
        failover: 'fast, cheap',
        skills: 'echo,fetch',
        mcp: 'docs,wiki/search',
        memory: 'own',
        route: ['channel:telegram', 'user:alice', 'channel:telegram'],
      },
      opts,
    );
    assert.equal(p.systemPrompt, 'You research.');
    assert.equal(p.model, 'smart');
    assert.deepEqual(p.failover, ['fast', 'cheap']);
    assert.deepEqual(p.skills, ['echo', 'fetch']);
    assert.equal(p.allSkills, false);
    assert.deepEqual(p.mcp, ['docs', 'wiki/search']);
    assert.equal(p.memorySharedWith, '');
    assert.deepEqual(p.routes, [
      { kind: 'channel', value: 'telegram' },
      { kind: 'user', value: 'alice' },
    ]);
    assert.equal(p.createdBy, 'cli:op');
  });

  it('no --skills/--mcp: none; * : all', () => {
    const none = profileFromOptions('a', { prompt: 'p', model: 'fast' }, opts);
    assert.deepEqual([none.allSkills, none.skills, none.allMcp, none.mcp], [false, [], false, []]);
    const all = profileFromOptions('a', { prompt: 'p', model: 'fast', skills: '*', mcp: '*' }, opts);
    assert.deepEqual([all.allSkills, all.allMcp], [true, true]);
  });

  it('reads the prompt from a file', () => {
    const p = profileFromOptions('a', { promptFile: 'x.txt', model: 'fast' }, { ...opts, read: () => 'From a file.\n' });
    assert.equal(p.systemPrompt, 'From a file.');
  });

  it('refuses what would not work, saying what to do', () => {
    const t = (name: string, o: Parameters<typeof profileFromOptions>[1], re: RegExp) =>
      assert.throws(() => profileFromOptions(name, o, opts), re);
    t('Research', { prompt: 'p', model: 'fast' }, /agent name "Research" must be 1-32 characters of a-z/);
    t('a', { model: 'fast' }, /--prompt is required/);
    t('a', { prompt: 'p' }, /--model is required/);
    t('a', { prompt: 'p', model: 'gpt-9' }, /model "gpt-9" is not in TALON_LLM_MODELS; available: fast, smart, cheap/);
    t('a', { prompt: 'p', model: 'fast', failover: 'smart,fast' }, /repeats a model/);
    t('a', { prompt: 'p', model: 'fast', route: ['thread:x'] }, /--route "thread:x" must be channel:<channel>/);
    t('a', { prompt: 'p', model: 'fast', route: ['channel:'] }, /--route "channel:" must be/);
    t('a', { prompt: 'p', model: 'fast', memory: 'global' }, /--memory must be own or shared:<agent>/);
    t('a', { prompt: 'p', model: 'fast', memory: 'shared:a' }, /names the agent itself/);
    t('a', { prompt: 'p', model: 'fast', skills: 'a b' }, /--skills entry "a b" is not a name/);
    t('fast', { prompt: 'p', model: 'smart' }, /is a model name/);
    t('talon', { prompt: 'p', model: 'smart' }, /is a model name/);
    t('a', { prompt: 'p', promptFile: 'f', model: 'fast' }, /not both/);
  });

  it('edit changes only what is given; --clear-routes then --route replaces the routes', () => {
    const p = profileFromOptions('a', { prompt: 'p', model: 'fast', skills: 'echo', route: ['user:bob'] }, opts);
    const e = applyOptions(p, { mcp: '*', memory: 'shared:b' }, { now: 2000, models: opts.models });
    assert.deepEqual(e.skills, ['echo']);
    assert.equal(e.allMcp, true);
    assert.equal(e.memorySharedWith, 'b');
    assert.equal(e.updatedAtMs, 2000);
    assert.deepEqual(applyOptions(e, { route: ['channel:slack'] }, { now: 3000 }).routes.length, 2);
    assert.deepEqual(applyOptions(e, { clearRoutes: true, route: ['channel:slack'] }, { now: 3000 }).routes, [
      { kind: 'channel', value: 'slack' },
    ]);
  });

  it('knows the model names only where TALON_LLM_MODELS is set', () => {
    assert.equal(knownModels({}), undefined);
    const models = [{ name: 'fast', targets: [{ provider: 'openai', base_url: 'https://a.example/v1', model: 'm', key: 'none' }] }];
    assert.deepEqual(knownModels({ TALON_LLM_MODELS: JSON.stringify(models) }), ['fast']);
  });
});
