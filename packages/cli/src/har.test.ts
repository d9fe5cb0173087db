import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EgressDecision } from '@talon/proto';
import { decisionsToHar } from './har.ts';

const d = (over: Partial<EgressDecision>): EgressDecision => ({
  ...EgressDecision.fromPartial({}),
  id: 'x',
  atMs: Date.UTC(2026, 10, 26, 12, 0, 0),
  principal: 'orchestrator',
  method: 'POST',
  scheme: 'https',
  host: 'api.example.com',
  port: 443,
  path: '/v1/chat',
  query: '?a=1&key={{secret:k}}',
  allowed: true,
  reason: 'allowed',
  status: 200,
  durationMs: 40,
  waitMs: 30,
  requestHeaders: [{ name: 'authorization', value: 'Bearer {{secret:llm_api_key}}' }],
  responseHeaders: [{ name: 'content-type', value: 'application/json' }],
  requestBodyBytes: 10,
  responseBodyBytes: 20,
  secrets: ['llm_api_key'],
  ...over,
});

describe('HAR export', () => {
  it('writes a valid HAR 1.2 log with placeholders, never values', () => {
    const har = decisionsToHar([
      d({}),
      d({ allowed: false, reason: 'host_not_allowed', status: 403, port: 8443, host: '::1', scheme: 'http' }),
    ]);
    assert.equal(har.log.version, '1.2');
    const [a, b] = har.log.entries;
    assert.equal(a!.request.url, 'https://api.example.com/v1/chat?a=1&key={{secret:k}}');
    assert.deepEqual(a!.request.queryString, [
      { name: 'a', value: '1' },
      { name: 'key', value: '{{secret:k}}' },
    ]);
    assert.equal(a!.request.headers[0]!.value, 'Bearer {{secret:llm_api_key}}');
    assert.equal(a!.startedDateTime, '2026-11-26T11:59:59.960Z');
    assert.deepEqual(a!.timings, { send: 0, wait: 30, receive: 10 });
    assert.equal(a!.response.content.mimeType, 'application/json');
    assert.equal(b!.request.url, 'http://[::1]:8443/v1/chat?a=1&key={{secret:k}}');
    assert.equal(b!.response.statusText, 'host_not_allowed');
    assert.match(b!.comment, /refused/);
  });
});
