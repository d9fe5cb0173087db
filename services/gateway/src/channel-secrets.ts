// Which vault secrets each enabled chat platform needs, and which of them the vault lacks:
// `TALON_CHANNELS=telegram` without the Telegram secrets used to start without a word and
// fail only when the first webhook or reply came. Pure; main.ts asks egress for the names.
import type { Channel } from './channels/types.ts';
import type { GatewayConfig } from './config.ts';

export interface NeededSecret {
  channel: Channel;
  /** The secret's name in the vault. */
  secret: string;
  /** The setting that names it (to use another name). */
  setting: string;
}

/** The settings that name each channel's vault secrets (ChannelConfig includes them). */
export type ChannelSecretSettings = Pick<
  GatewayConfig,
  | 'telegramBotTokenSecret'
  | 'telegramWebhookSecret'
  | 'slackBotTokenSecret'
  | 'slackSigningSecret'
  | 'discordBotTokenSecret'
  | 'discordPublicKeySecret'
  | 'webhookSigningSecret'
  | 'webhookCallbackSecret'
  | 'mattermostBotTokenSecret'
  | 'matrixAccessTokenSecret'
  | 'whatsappAccessTokenSecret'
  | 'whatsappAppSecret'
  | 'whatsappVerifyTokenSecret'
>;

/** The secrets of each enabled channel, in a fixed order. */
export function neededSecrets(
  channels: readonly Channel[],
  cfg: ChannelSecretSettings &
    Pick<GatewayConfig, 'telegramMode'> &
    Partial<Pick<GatewayConfig, 'discordMode' | 'discordGatewayTokenSecret' | 'slackMode' | 'slackAppTokenSecret'>>,
): NeededSecret[] {
  const telegram: Array<[string, string]> = [[cfg.telegramBotTokenSecret, 'GATEWAY_TELEGRAM_BOT_TOKEN_SECRET']];
  // Long polling needs no webhook secret (nothing comes in).
  if (cfg.telegramMode === 'webhook') telegram.push([cfg.telegramWebhookSecret, 'GATEWAY_TELEGRAM_WEBHOOK_SECRET']);
  const of: Record<Channel, Array<[string, string]>> = {
    telegram,
    slack: [
      [cfg.slackBotTokenSecret, 'GATEWAY_SLACK_BOT_TOKEN_SECRET'],
      // Socket Mode needs the app-level token instead of the signing secret (nothing is POSTed to us).
      cfg.slackMode === 'socket' && cfg.slackAppTokenSecret
        ? [cfg.slackAppTokenSecret, 'GATEWAY_SLACK_APP_TOKEN_SECRET']
        : [cfg.slackSigningSecret, 'GATEWAY_SLACK_SIGNING_SECRET'],
    ],
    discord:
      cfg.discordMode === 'gateway' && cfg.discordGatewayTokenSecret
        ? [
            [cfg.discordBotTokenSecret, 'GATEWAY_DISCORD_BOT_TOKEN_SECRET'],
            // The Gateway's IDENTIFY token: a frame placement, so a secret of its own (slash commands, optional here, need the public key too).
            [cfg.discordGatewayTokenSecret, 'GATEWAY_DISCORD_GATEWAY_TOKEN_SECRET'],
          ]
        : [
            [cfg.discordBotTokenSecret, 'GATEWAY_DISCORD_BOT_TOKEN_SECRET'],
            [cfg.discordPublicKeySecret, 'GATEWAY_DISCORD_PUBLIC_KEY_SECRET'],
          ],
    webhook: [
      [cfg.webhookSigningSecret, 'GATEWAY_WEBHOOK_SIGNING_SECRET'],
      [cfg.webhookCallbackSecret, 'GATEWAY_WEBHOOK_CALLBACK_SECRET'],
    ],
    // The bot token fills the WebSocket upgrade's and the REST calls' Authorization header.
    mattermost: [[cfg.mattermostBotTokenSecret, 'GATEWAY_MATTERMOST_BOT_TOKEN_SECRET']],
    matrix: [[cfg.matrixAccessTokenSecret, 'GATEWAY_MATRIX_ACCESS_TOKEN_SECRET']],
    whatsapp: [
      [cfg.whatsappAccessTokenSecret, 'GATEWAY_WHATSAPP_ACCESS_TOKEN_SECRET'],
      [cfg.whatsappAppSecret, 'GATEWAY_WHATSAPP_APP_SECRET'],
      [cfg.whatsappVerifyTokenSecret, 'GATEWAY_WHATSAPP_VERIFY_TOKEN_SECRET'],
    ],
  };
  return channels.flatMap((channel) => of[channel].map(([secret, setting]) => ({ channel, secret, setting })));
}

/** The needed secrets the vault does not hold. */
export function missingSecrets(needed: readonly NeededSecret[], stored: Iterable<string>): NeededSecret[] {
  const have = new Set(stored);
  return needed.filter((n) => !have.has(n.secret));
}

/** One line for the operator: what is missing and how to add it. */
export function missingSecretsMessage(missing: readonly NeededSecret[]): string {
  const names = missing.map((m) => `${m.secret} (${m.channel}; named by ${m.setting})`).join(', ');
  return `enabled channels need vault secrets that are not stored: ${names}; add each with \`talon secrets set NAME\` (see the README, Channels) — until then their webhooks are refused and replies cannot be sent`;
}

/**
 * What the gateway's /readyz says about the enabled channels' secrets (`channel_secrets`):
 * `talon up` prints it, so a channel that cannot work is named at start, not at its first message.
 */
export type ChannelSecretsFact =
  | { state: 'checking' }
  | { state: 'unknown'; reason: string }
  | { state: 'ok' }
  | { state: 'missing'; missing: Array<{ channel: Channel; secret: string; setting: string }> };

export function channelSecretsFact(needed: readonly NeededSecret[], stored: Iterable<string>): ChannelSecretsFact {
  const missing = missingSecrets(needed, stored);
  return missing.length === 0 ? { state: 'ok' } : { state: 'missing', missing: missing.map((m) => ({ ...m })) };
}
