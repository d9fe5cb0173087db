// An operator enables a chat platform without storing its secrets: the gateway says so
// once the vault can answer, naming each missing secret and the setting that names it,
// instead of starting silently and failing at the first webhook.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';

describe('channel secrets at start', () => {
  let tp: TestPlatform;
  before(async () => {
    tp = await startTestPlatform({
      env: { TALON_CHANNELS: 'telegram', TALON_VAULT_PASSPHRASE: 'channel secrets test passphrase' },
    });
  });
  after(async () => {
    await tp?.stop();
  });

  it('warns about the Telegram secrets the vault does not hold, and how to add them', async () => {
    const line = await waitFor(
      () =>
        tp
          .log('gateway')
          .split('\n')
          .find((l) => l.includes('enabled channels need vault secrets')),
      60_000,
      'the gateway to warn about the missing channel secrets',
    );
    assert.match(line, /telegram_bot_token \(telegram; named by GATEWAY_TELEGRAM_BOT_TOKEN_SECRET\)/);
    // Long polling (the default) needs no webhook secret.
    assert.doesNotMatch(line, /telegram_webhook_secret/);
    assert.match(line, /talon secrets set NAME/);
    assert.doesNotMatch(line, /slack|discord/);
  });

  it('names them in the gateway /readyz, where talon up reads them for its Channels line', async () => {
    const fact = await waitFor(
      async () => {
        const body = (await (await fetch(`${tp.platform.internalUrl('gateway')}/readyz`)).json()) as {
          channels?: string[];
          channel_secrets?: { state: string; missing?: Array<{ secret: string; setting: string }> };
        };
        return body.channel_secrets?.state === 'missing' ? body : undefined;
      },
      60_000,
      'the gateway to report the missing channel secrets in /readyz',
    );
    assert.deepEqual(fact.channels, ['telegram']);
    assert.deepEqual(
      fact.channel_secrets?.missing?.map((m) => [m.secret, m.setting]),
      [['telegram_bot_token', 'GATEWAY_TELEGRAM_BOT_TOKEN_SECRET']],
    );
  });
});
