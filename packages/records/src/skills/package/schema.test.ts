import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkSchemaSupported, validateInput } from './schema.ts';

const SCHEMA = {
  type: 'object',
  properties: {
    owner: { type: 'string', pattern: '^[a-z]+$', minLength: 2, maxLength: 5 },
    limit: { type: 'integer', minimum: 1, maximum: 50 },
    state: { type: 'string', enum: ['open', 'closed'] },
    tags: { type: 'array', items: { type: 'string' }, maxItems: 2 },
    ratio: { type: 'number', exclusiveMaximum: 1 },
  },
  required: ['owner'],
  additionalProperties: false,
};

describe('input schema subset', () => {
  it('accepts the supported keywords', () => {
    assert.doesNotThrow(() => checkSchemaSupported(SCHEMA));
  });

  it('refuses unsupported keywords, bad patterns and deep nesting', () => {
    assert.throws(() => checkSchemaSupported({ type: 'object', properties: { a: { anyOf: [] } } }), /#\/properties\/a: keyword "anyOf"/);
    assert.throws(
      () => checkSchemaSupported({ type: 'object', properties: { a: { type: 'string', pattern: '(' } } }),
      /not a valid regular expression/,
    );
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 20; i++) deep = { type: 'object', properties: { x: deep } };
    assert.throws(() => checkSchemaSupported(deep), /nested deeper/);
  });

  it('validates values and reports the path of each problem', () => {
    assert.deepEqual(validateInput(SCHEMA, { owner: 'abc', limit: 3, state: 'open', tags: ['x'], ratio: 0.5 }), []);
    const problems = validateInput(SCHEMA, { owner: 'A', limit: 3.5, state: 'x', tags: ['a', 'b', 'c'], extra: 1 });
    assert.ok(problems.some((p) => p.startsWith('/owner: must be at least 2')));
    assert.ok(problems.some((p) => p.startsWith('/limit: expected integer')));
    assert.ok(problems.some((p) => p.startsWith('/state: must be one of')));
    assert.equal(problems.length, 5, 'reports at most 5 problems');
    assert.deepEqual(validateInput(SCHEMA, {}), ['/: missing required property "owner"']);
    assert.deepEqual(validateInput(SCHEMA, []), ['/: expected object, got array']);
    assert.deepEqual(validateInput(SCHEMA, { owner: 'abc', extra: true }), ['/extra: property "extra" is not allowed']);
    assert.deepEqual(validateInput(SCHEMA, { owner: 'abc', ratio: 1 }), ['/ratio: must be < 1']);
  });
});
