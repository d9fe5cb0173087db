import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { channelsLine, enabledChannels } from './channels-summary.ts';

describe('the Channels line of talon up', () => {
  it('names every missing secret with the command that stores it', () => {
    const r = channelsLine({
      status: 'ready',
      channels: ['telegram', 'slack'],
      channel_secrets: {
        state: 'missing',
        missing: [
          { channel: 'telegram', secret: 'telegram_bot_token', setting: 'GATEWAY_TELEGRAM_BOT_TOKEN_SECRET' },
          { channel: 'slack', secret: 'slack_app_token', setting: 'GATEWAY_SLACK_APP_TOKEN_SECRET' },
        ],
      },
    });
    assert.equal(r.settled, true);
    assert.match(r.lines[0]!, /^telegram, slack: NOT WORKING/);
    assert.match(
      r.lines[1]!,
      /telegram_bot_token \(telegram; named by GATEWAY_TELEGRAM_BOT_TOKEN_SECRET\): npm run talon -- secrets set telegram_bot_token/,
    );
    assert.match(r.lines[2]!, /slack_app_token/);
  });

  it('says when all is stored, when the vault cannot tell, and when the gateway has not checked yet', () => {
    assert.deepEqual(channelsLine({ channels: ['matrix'], channel_secrets: { state: 'ok' } }), {
      settled: true,
      lines: ['matrix (their vault secrets are stored)'],
    });
    const unknown = channelsLine({ channels: ['matrix'], channel_secrets: { state: 'unknown', reason: 'sealed' } });
    assert.equal(unknown.settled, true);
    assert.match(unknown.lines[0]!, /could not be checked \(sealed\); unseal the vault/);
    for (const body of [
      undefined,
      'x',
      { channels: ['matrix'] },
      { channels: ['matrix'], channel_secrets: { state: 'checking' } },
      { channels: ['matrix'], channel_secrets: { state: 'missing', missing: 'x' } },
    ]) {
      const r = channelsLine(body);
      if (r.settled) assert.match(r.lines[0]!, /NOT WORKING/, 'a malformed list still says the channel is not working');
      else assert.match(r.lines[0]!, /being checked/);
    }
  });

  it('prints nothing for a gateway without channels', () => {
    assert.deepEqual(enabledChannels({ status: 'ready', missing: [] }), []);
    assert.deepEqual(enabledChannels({ channels: ['telegram', 'whatsapp'] }), ['telegram', 'whatsapp']);
  });
});
