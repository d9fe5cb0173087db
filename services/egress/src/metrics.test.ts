import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leakRule, principalKind } from './metrics.ts';

test('principals are counted by kind, never by name', () => {
  assert.equal(principalKind('orchestrator'), 'service');
  assert.equal(principalKind('skill:weather@1.2.0'), 'skill');
  assert.equal(principalKind('ci-runner'), 'other');
  assert.equal(principalKind(''), 'none');
});

test('a leak is counted by rule; a vault secret never by its name', () => {
  assert.equal(leakRule('github_pat'), 'github_pat');
  assert.equal(leakRule('secret:llm_api_key'), 'vault_secret');
  assert.equal(leakRule('not a rule id at all'), 'other');
});
