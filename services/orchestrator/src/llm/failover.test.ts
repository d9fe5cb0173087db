import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EgressRefusal } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import { LlmHttpError } from './client.ts';
import { failsOver } from './failover.ts';
import { LlmProtocolError } from './types.ts';

const fresh = { streamed: false, aborted: false };
const errno = (code: string) => Object.assign(new Error(code), { code });

describe('failsOver', () => {
  it('moves on for 429, 5xx and 408 from the provider', () => {
    for (const status of [429, 500, 502, 503, 504, 529, 408])
      assert.equal(failsOver(new LlmHttpError(status, ''), fresh), true, String(status));
  });

  it('stops for every other 4xx: the next provider would refuse the same request', () => {
    for (const status of [400, 401, 403, 404, 409, 413, 422])
      assert.equal(failsOver(new LlmHttpError(status, ''), fresh), false, String(status));
  });

  it('moves on when egress could not reach the provider or it did not answer in time', () => {
    assert.equal(failsOver(new EgressRefusal('upstream_error', 'upstream_unreachable', 'cannot reach x'), fresh), true);
    assert.equal(failsOver(new EgressRefusal('upstream_timeout', 'upstream_timeout', 'x did not answer'), fresh), true);
    assert.equal(failsOver(new TalonError('upstream_timeout', 'no response from x through egress in time'), fresh), true);
    // The call's own time limit, bare or wrapped by the egress client.
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    assert.equal(failsOver(timeout, fresh), true);
    assert.equal(failsOver(new TalonError('unavailable', 'egress proxy … unreachable', { cause: timeout }), fresh), true);
    assert.equal(failsOver(errno('UND_ERR_BODY_TIMEOUT'), fresh), true);
    // The connection broke under the answer.
    assert.equal(failsOver(errno('UND_ERR_SOCKET'), fresh), true);
    assert.equal(failsOver(errno('ECONNRESET'), fresh), true);
  });

  it("stops for egress's own refusals, an unreachable egress and answers it cannot read", () => {
    for (const [code, reason] of [
      ['policy_denied', 'secret_leak_blocked'],
      ['host_not_allowed', 'host_not_allowed'],
      ['vault_sealed', 'vault_sealed'],
      ['private_address', 'private_address'],
    ] as const) {
      assert.equal(failsOver(new EgressRefusal(code, reason, 'refused'), fresh), false, code);
    }
    assert.equal(failsOver(new TalonError('unavailable', 'egress proxy unreachable', { cause: errno('ECONNREFUSED') }), fresh), false);
    assert.equal(failsOver(new LlmProtocolError('stream chunk is not JSON'), fresh), false);
    assert.equal(failsOver(new TypeError('x is undefined'), fresh), false);
  });

  it('never once text reached the user, nor when the caller gave up', () => {
    const overloaded = new LlmHttpError(503, 'overloaded');
    assert.equal(failsOver(overloaded, { streamed: true, aborted: false }), false);
    assert.equal(failsOver(overloaded, { streamed: false, aborted: true }), false);
    assert.equal(failsOver(new DOMException('aborted', 'AbortError'), fresh), false);
  });
});
