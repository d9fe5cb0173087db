// The adapter table: one entry per chat platform.
import type { GatewayConfig } from '../config.ts';
import { discordSend, discordSignature, discordVerdict, parseDiscord } from './discord.ts';
import { mattermostSend, mattermostSignature, mattermostVerdict, parseMattermostWebhook } from './mattermost.ts';
import { matrixSend, matrixSignature, matrixVerdict, parseMatrix } from './matrix.ts';
import { parseSlack, slackSend, slackSignature, slackVerdict } from './slack.ts';
import { parseTelegram, telegramSend, telegramSignature, telegramVerdict } from './telegram.ts';
import type { ChannelSecretSettings } from '../channel-secrets.ts';
import type { Channel, HeaderBag, PlatformCall, SendVerdict, SignatureCheck, WebhookOutcome } from './types.ts';
import { parseWebhook, webhookSend, webhookSignature, webhookVerdict } from './webhook.ts';
import { parseWhatsApp, whatsappSend, whatsappSignature, whatsappVerdict, whatsappVerification } from './whatsapp.ts';

export interface ChannelAdapter {
  signature(headers: HeaderBag, raw: Buffer, nowS: number): SignatureCheck;
  parse(raw: Buffer): WebhookOutcome;
  /** Calls that deliver `text` to `threadId`; empty when the channel has nowhere to deliver. */
  send(threadId: string, text: string, inboundId: string, error?: string): PlatformCall[];
  verdict(status: number, body: string, retryAfter?: string): SendVerdict;
  /** A GET subscription handshake (WhatsApp): the vault's check of the query and the challenge to echo. */
  handshake?(query: URLSearchParams): { check: SignatureCheck; challenge: string };
}

export type ChannelConfig = Pick<
  GatewayConfig,
  | 'replayWindowS'
  | 'mattermostUrl'
  | 'matrixHomeserverUrl'
  | 'telegramApiUrl'
  | 'slackApiUrl'
  | 'discordApiUrl'
  | 'webhookCallbackUrl'
  | 'whatsappApiUrl'
> &
  ChannelSecretSettings &
  Partial<Pick<GatewayConfig, 'whatsappPhoneNumberId'>>;

export function adapters(c: ChannelConfig): Record<Channel, ChannelAdapter> {
  const w = c.replayWindowS;
  return {
    telegram: {
      signature: (h) => telegramSignature(h, c.telegramWebhookSecret),
      parse: parseTelegram,
      send: (t, text) => telegramSend(c.telegramApiUrl, c.telegramBotTokenSecret, t, text),
      verdict: telegramVerdict,
    },
    slack: {
      signature: (h, raw, now) => slackSignature(h, raw, now, w, c.slackSigningSecret),
      parse: parseSlack,
      send: (t, text) => slackSend(c.slackApiUrl, c.slackBotTokenSecret, t, text),
      verdict: slackVerdict,
    },
    discord: {
      signature: (h, raw, now) => discordSignature(h, raw, now, w, c.discordPublicKeySecret),
      parse: parseDiscord,
      send: (t, text, id) => discordSend(c.discordApiUrl, c.discordBotTokenSecret, t, text, id),
      verdict: discordVerdict,
    },
    webhook: {
      signature: (h, raw, now) => webhookSignature(h, raw, now, w, c.webhookSigningSecret),
      parse: parseWebhook,
      send: (t, text, id, error) =>
        c.webhookCallbackUrl ? webhookSend(c.webhookCallbackUrl, c.webhookCallbackSecret, t, text, id, error) : [],
      verdict: webhookVerdict,
    },
    matrix: {
      signature: matrixSignature,
      parse: parseMatrix,
      send: (t, text, id) => (c.matrixHomeserverUrl ? matrixSend(c.matrixHomeserverUrl, c.matrixAccessTokenSecret, t, text, id) : []),
      verdict: matrixVerdict,
    },
    whatsapp: {
      signature: (h, raw) => whatsappSignature(h, raw, c.whatsappAppSecret),
      parse: (raw) => parseWhatsApp(raw, c.whatsappPhoneNumberId),
      send: (t, text) => whatsappSend(c.whatsappApiUrl, c.whatsappPhoneNumberId, c.whatsappAccessTokenSecret, t, text),
      verdict: whatsappVerdict,
      handshake: (q) => whatsappVerification(q, c.whatsappVerifyTokenSecret),
    },
    mattermost: {
      // No webhook: posts arrive over the WebSocket API (channels/mattermost-runner.ts).
      signature: mattermostSignature,
      parse: parseMattermostWebhook,
      send: (t, text, id) => (c.mattermostUrl ? mattermostSend(c.mattermostUrl, c.mattermostBotTokenSecret, t, text, id) : []),
      verdict: mattermostVerdict,
    },
  };
}
