import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ackFrame, connectionsOpenCall, parseConnectionsOpen, parseEnvelope, slackLeaseKey } from './slack-socket.ts';

describe('Slack Socket Mode', () => {
  it('opens connections with the app-level token as a placeholder only', () => {
    const c = connectionsOpenCall('https://slack.com/api/', 'slack_app_token');
    assert.equal(c.url, 'https://slack.com/api/apps.connections.open');
    assert.equal(c.headers.authorization, 'Bearer {{secret:slack_app_token}}');
    assert.equal(slackLeaseKey('slack_app_token'), 'lease.gateway.slack.slack_app_token');
  });

  it('reads the answer of apps.connections.open: a URL, a retry, or what the operator must fix', () => {
    assert.deepEqual(parseConnectionsOpen(200, '{"ok":true,"url":"wss://wss-primary.slack.com/link/?ticket=x"}'), {
      kind: 'url',
      url: 'wss://wss-primary.slack.com/link/?ticket=x',
    });
    assert.deepEqual(parseConnectionsOpen(429, '{"ok":false,"error":"ratelimited"}', '3'), {
      kind: 'retry',
      code: 'ratelimited',
      afterMs: 3000,
    });
    assert.deepEqual(parseConnectionsOpen(502, 'bad gateway'), { kind: 'retry', code: 'http_502' });
    assert.deepEqual(parseConnectionsOpen(200, '{"ok":true,"url":"https://evil.test/"}'), { kind: 'retry', code: 'http_200' });
    const fatal = parseConnectionsOpen(200, '{"ok":false,"error":"not_allowed_token_type"}');
    assert.equal(fatal.kind, 'fatal');
    assert.match((fatal as { reason: string }).reason, /app-level token \(xapp-/);
  });

  it('turns envelopes into events to queue and acknowledge, acknowledgements, and reconnects', () => {
    const env = parseEnvelope(
      JSON.stringify({
        envelope_id: 'e1',
        type: 'events_api',
        payload: { type: 'event_callback', team_id: 'T1', event: { type: 'message' } },
      }),
    );
    assert.equal(env.kind, 'event');
    assert.equal((env as { envelopeId: string }).envelopeId, 'e1');
    assert.deepEqual(JSON.parse(String((env as { payload: Buffer }).payload)), {
      type: 'event_callback',
      team_id: 'T1',
      event: { type: 'message' },
    });
    assert.deepEqual(parseEnvelope('{"envelope_id":"e2","type":"slash_commands","payload":{}}'), { kind: 'ack', envelopeId: 'e2' });
    assert.deepEqual(parseEnvelope('{"type":"disconnect","reason":"refresh_requested"}'), {
      kind: 'reconnect',
      reason: 'disconnect (refresh_requested)',
    });
    assert.deepEqual(parseEnvelope('{"type":"hello"}'), { kind: 'none' });
    assert.deepEqual(parseEnvelope('not json'), { kind: 'none' });
    assert.equal(ackFrame('e1'), '{"envelope_id":"e1"}');
  });
});
