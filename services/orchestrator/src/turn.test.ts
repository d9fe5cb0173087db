import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TalonError } from '@talon/kit/errors';
import { failedTurnRecord, onRecordFailure } from './turn.ts';

describe('recording an answer that is out already', () => {
  it('retries an outage without limit, backing off to 30 s', () => {
    const down = new TalonError('unavailable', 'memory is not reachable');
    assert.deepEqual(onRecordFailure(down, 1), { kind: 'retry', delayMs: 1000 });
    assert.deepEqual(onRecordFailure(down, 3), { kind: 'retry', delayMs: 4000 });
    assert.deepEqual(onRecordFailure(down, 500), { kind: 'retry', delayMs: 30_000 });
    assert.equal(onRecordFailure(new Error('socket hang up'), 2).kind, 'retry', 'an unknown error is treated as an outage');
    assert.equal(onRecordFailure(new TalonError('internal', 'database restarting'), 2).kind, 'retry');
  });

  it('drops a record memory refuses for good (retrying would never succeed)', () => {
    assert.deepEqual(onRecordFailure(new TalonError('invalid_argument', 'turn too long'), 1), { kind: 'drop', code: 'invalid_argument' });
    assert.equal(onRecordFailure(new TalonError('permission_denied', 'not the orchestrator'), 7).kind, 'drop');
  });

  it('records a failed turn as a short assistant turn saying what the user was told, under the answer id', () => {
    const t = failedTurnRecord('in-1', 'vault_sealed', 'the vault is sealed;\n  unseal it with talon vault unseal', 5);
    assert.deepEqual(t, {
      id: 'in-1:assistant',
      role: 'assistant',
      source: 'system',
      content: '[no answer: this turn failed (vault_sealed): the vault is sealed; unseal it with talon vault unseal]',
      createdAtMs: 5,
    });
    assert.ok(failedTurnRecord('in-1', 'internal', 'x'.repeat(5000)).content.length < 400);
  });
});
