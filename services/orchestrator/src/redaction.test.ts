import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EgressRefusal } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import { isLeakBlocked, redactionNotice } from './redaction.ts';

describe('redactionNotice', () => {
  it('is empty when nothing was removed', () => {
    assert.equal(redactionNotice([], []), '');
  });

  it('tells the user what was removed from their message and to rotate it, without naming vault secrets', () => {
    const n = redactionNotice(['github_pat', 'vault_secret'], []);
    assert.match(n, /a credential \(github_pat\)/);
    assert.match(n, /a value held in Talon's vault/);
    assert.match(n, /rotate it/);
    assert.doesNotMatch(n, /earlier content/);
  });

  it('says when earlier content of the conversation was left out', () => {
    const n = redactionNotice([], ['aws_access_key_id']);
    assert.match(n, /earlier content of this conversation held a credential \(aws_access_key_id\)/);
    assert.doesNotMatch(n, /your message/);
  });
});

describe('isLeakBlocked', () => {
  it('recognises only egress refusals for credential material', () => {
    assert.equal(isLeakBlocked(new EgressRefusal('policy_denied', 'secret_leak_blocked', 'blocked')), true);
    assert.equal(isLeakBlocked(new EgressRefusal('policy_denied', 'host_not_allowed', 'no')), false);
    assert.equal(isLeakBlocked(new TalonError('policy_denied', 'secret_leak_blocked')), false);
  });
});
