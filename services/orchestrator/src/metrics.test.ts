import { test } from 'node:test';
import assert from 'node:assert/strict';
import { llmOutcome, turnOutcome } from './metrics.ts';
import { LlmHttpError } from './llm/client.ts';
import { TalonError } from '@talon/kit/errors';

test('a turn is counted once, by the event that ended its computation', () => {
  assert.equal(turnOutcome('received', 'begin'), undefined);
  assert.equal(turnOutcome('context', 'context_ready'), undefined);
  assert.equal(turnOutcome('looping', 'answered'), 'answered');
  assert.equal(turnOutcome('context', 'failed'), 'failed');
  assert.equal(turnOutcome('looping', 'retry'), 'retry');
  assert.equal(turnOutcome('received', 'undeliverable'), 'undeliverable');
  assert.equal(turnOutcome('received', 'reply_found'), 'reply_found');
  // What follows the outcome is not a second one.
  assert.equal(turnOutcome('answered', 'superseded'), undefined);
  assert.equal(turnOutcome('answered', 'reply_stored'), undefined);
  assert.equal(turnOutcome('stored', 'published'), undefined);
});

test('an LLM call outcome comes from a closed set', () => {
  assert.equal(llmOutcome(new LlmHttpError(429, 'slow down')), 'rate_limited');
  assert.equal(llmOutcome(new LlmHttpError(503, '')), 'server_error');
  assert.equal(llmOutcome(new LlmHttpError(400, 'bad')), 'client_error');
  assert.equal(llmOutcome(new DOMException('t', 'TimeoutError')), 'timeout');
  assert.equal(llmOutcome(new TalonError('timeout', 'x')), 'timeout');
  assert.equal(llmOutcome(new DOMException('a', 'AbortError')), 'aborted');
  assert.equal(llmOutcome(new Error('the provider said something long and specific')), 'error');
});
