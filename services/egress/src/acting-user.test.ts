import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { actingUser, EGRESS_USER_HEADER, USER_DELEGATES } from './acting-user.ts';

describe('actingUser', () => {
  it('is empty when no user is named, whoever calls', () => {
    assert.deepEqual(actingUser('orchestrator', undefined), { user: '' });
    assert.deepEqual(actingUser('tools', undefined), { user: '' });
  });

  it('takes a well-formed user id from a principal that acts for users', () => {
    for (const p of USER_DELEGATES) assert.deepEqual(actingUser(p, 'alice.smith-2'), { user: 'alice.smith-2' });
  });

  it('refuses the header from any other principal, even with a valid id', () => {
    for (const p of ['tools', 'admin', 'skill:weather@1.0.0', 'egress', 'memory', 'vault']) {
      const r = actingUser(p, 'alice');
      assert.ok('refused' in r, p);
      assert.equal(r.refused, 'user_header_not_allowed');
      assert.match(r.message, new RegExp(EGRESS_USER_HEADER));
    }
  });

  it('refuses a value that is not exactly one user id', () => {
    for (const v of ['', 'Alice', 'a b', 'alice\r\nx-evil: 1', '-alice', 'a'.repeat(65), 'alice,bob', ['alice', 'bob'], '../etc']) {
      const r = actingUser('orchestrator', v);
      assert.ok('refused' in r, JSON.stringify(v));
      assert.equal(r.refused, 'bad_user_header');
    }
  });

  it('uses the delegates it is given', () => {
    assert.deepEqual(actingUser('tools', 'bob', ['tools']), { user: 'bob' });
    assert.ok('refused' in actingUser('orchestrator', 'bob', []));
  });
});
