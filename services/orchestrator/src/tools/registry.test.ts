import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ToolRegistry, validate } from './registry.ts';

describe('tool registry', () => {
  it('validates arguments against the JSON schema', () => {
    const s = {
      type: 'object',
      properties: {
        q: { type: 'string', minLength: 1, maxLength: 5 },
        n: { type: 'integer', minimum: 1, maximum: 10 },
        tags: { type: 'array', maxItems: 2, items: { type: 'string', enum: ['a', 'b'] } },
      },
      required: ['q'],
      additionalProperties: false,
    };
    assert.equal(validate(s, { q: 'abc', n: 3, tags: ['a'] }, 'arguments'), undefined);
    assert.equal(validate(s, {}, 'arguments'), 'arguments.q is required');
    assert.equal(validate(s, { q: '' }, 'arguments'), 'arguments.q must have at least 1 characters');
    assert.equal(validate(s, { q: 'abcdef' }, 'arguments'), 'arguments.q must have at most 5 characters');
    assert.equal(validate(s, { q: 'a', n: 2.5 }, 'arguments'), 'arguments.n must be an integer');
    assert.equal(validate(s, { q: 'a', n: 11 }, 'arguments'), 'arguments.n must be at most 10');
    assert.equal(validate(s, { q: 'a', tags: ['c'] }, 'arguments'), 'arguments.tags[0] must be one of "a", "b"');
    assert.equal(validate(s, { q: 'a', extra: 1 }, 'arguments'), 'arguments.extra is not a known argument');
    assert.equal(validate(s, ['q'], 'arguments'), 'arguments must be an object');
  });

  it('refuses bad registrations', () => {
    const r = new ToolRegistry();
    const t = { name: 'ok', description: '', parameters: { type: 'object' }, handler: async () => '' };
    r.register(t);
    assert.throws(() => r.register(t), /registered twice/);
    assert.throws(() => r.register({ ...t, name: 'bad name' }), /must match/);
    assert.throws(() => r.register({ ...t, name: 'x', parameters: { type: 'string' } }), /type object/);
    assert.deepEqual(r.specs(), [{ name: 'ok', description: '', parameters: { type: 'object' } }]);
  });
});
