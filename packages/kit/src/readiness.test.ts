import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readiness, type ServingState } from './readiness.ts';

describe('readiness', () => {
  it('serves only when started and every dependency is up, and tells each change once', () => {
    const seen: ServingState[] = [];
    const r = new Readiness((s) => seen.push(s));
    r.setDependency('nats', false);
    r.setServing('SERVING');
    assert.equal(r.state, 'NOT_SERVING');
    assert.deepEqual(r.missing, ['nats']);
    r.setDependency('nats', true);
    assert.equal(r.state, 'SERVING');
    r.setDependency('database', false);
    r.setDependency('nats', false);
    r.setDependency('database', true);
    assert.equal(r.state, 'NOT_SERVING', 'still without NATS');
    r.setDependency('nats', true);
    r.setDependency('nats', true);
    r.setServing('NOT_SERVING');
    r.setDependency('nats', false);
    assert.deepEqual(seen, ['SERVING', 'NOT_SERVING', 'SERVING', 'NOT_SERVING']);
  });
});
