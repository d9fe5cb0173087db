import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadGatewayConfig } from './config.ts';
import { missingSecrets, missingSecretsMessage, neededSecrets } from './channel-secrets.ts';

const cfg = loadGatewayConfig({
  GATEWAY_SLACK_SIGNING_SECRET: 'my_slack_signing',
  GATEWAY_TELEGRAM_MODE: 'webhook',
  GATEWAY_SLACK_MODE: 'events',
});

describe('channel secrets', () => {
  it('names the secrets of each enabled channel only', () => {
    assert.deepEqual(neededSecrets([], cfg), []);
    assert.deepEqual(
      neededSecrets(['telegram', 'slack'], cfg).map((n) => `${n.channel}:${n.secret}`),
      ['telegram:telegram_bot_token', 'telegram:telegram_webhook_secret', 'slack:slack_bot_token', 'slack:my_slack_signing'],
    );
  });

  it('Slack by Socket Mode and Discord by the Gateway (the defaults) need their connection tokens, not webhook keys', () => {
    assert.deepEqual(
      neededSecrets(['slack', 'discord'], loadGatewayConfig({})).map((n) => n.secret),
      ['slack_bot_token', 'slack_app_token', 'discord_bot_token', 'discord_gateway_token'],
    );
  });

  it('Telegram by long polling (the default) needs no webhook secret', () => {
    assert.deepEqual(
      neededSecrets(['telegram'], loadGatewayConfig({})).map((n) => n.secret),
      ['telegram_bot_token'],
    );
  });

  it('finds the ones the vault lacks, and says how to add them', () => {
    const missing = missingSecrets(neededSecrets(['telegram'], cfg), ['telegram_bot_token', 'llm_api_key']);
    assert.deepEqual(
      missing.map((m) => m.secret),
      ['telegram_webhook_secret'],
    );
    const msg = missingSecretsMessage(missing);
    assert.match(msg, /telegram_webhook_secret \(telegram; named by GATEWAY_TELEGRAM_WEBHOOK_SECRET\)/);
    assert.match(msg, /talon secrets set NAME/);
    assert.deepEqual(missingSecrets(neededSecrets(['telegram'], cfg), ['telegram_bot_token', 'telegram_webhook_secret']), []);
  });
});
