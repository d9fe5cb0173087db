import { SECRET_NAME_PATTERN } from '@talon/kit/contracts';
import { channelApiFields, commonFields, natsFields } from '@talon/kit/service';
import { llmModelFields } from '@talon/kit/models';
import {
  bool,
  ConfigError,
  ConfigFieldError,
  int,
  list,
  loadConfig,
  oneOf,
  optionalStr,
  port,
  str,
  url,
  type ConfigOf,
} from '@talon/kit/config';
import { isIpOrCidr } from './net.ts';
import { CHANNELS, type Channel } from './channels/types.ts';

const SECRET_NAME = SECRET_NAME_PATTERN;

function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === v.replace(/\/$/, '');
  } catch {
    return false;
  }
}

export function gatewaySpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('gateway', env),
    ...natsFields('gateway', env),
    httpHost: str('GATEWAY_HOST', { doc: 'Address the gateway HTTP server listens on.', default: '127.0.0.1' }),
    httpPort: port('TALON_GATEWAY_PORT', { doc: 'Port of the gateway HTTP server (API, web UI, WebSocket, webhooks).', default: 8080 }),
    allowedOrigins: list('GATEWAY_ALLOWED_ORIGINS', {
      doc: 'Origins (scheme://host[:port]) whose pages may use the WebSocket and the API from a browser. Empty: the gateway’s own origin (http://GATEWAY_HOST:PORT, plus localhost/127.0.0.1 when bound to loopback). Set it to your public URL behind a reverse proxy.',
      default: [],
      item: isOrigin,
      expect: 'a comma-separated list of origins such as https://talon.example.com',
    }),
    trustedProxies: list('GATEWAY_TRUSTED_PROXIES', {
      doc: 'IP addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed (rightmost untrusted address wins). Empty: the socket address is the client, whatever headers say; loopback is not trusted by default.',
      default: [],
      item: isIpOrCidr,
      expect: 'a comma-separated list of IPs or CIDRs such as 10.0.0.0/8,::1',
    }),
    maxBodyBytes: int('GATEWAY_MAX_BODY_BYTES', {
      doc: 'Largest request body the gateway accepts (413 above); also the largest WebSocket message.',
      default: 1024 * 1024,
      min: 1024,
      max: 64 * 1024 * 1024,
    }),
    maxWebhookBytes: int('GATEWAY_MAX_WEBHOOK_BYTES', {
      doc: 'Largest webhook body accepted from a chat platform (413 above).',
      default: 256 * 1024,
      min: 1024,
      max: 16 * 1024 * 1024,
    }),
    turnTimeoutMs: int('GATEWAY_TURN_TIMEOUT_MS', {
      doc: 'How long an API request waits for its reply before answering 504 (the turn itself continues).',
      default: 180_000,
      min: 1000,
    }),
    maxMessages: int('GATEWAY_MAX_MESSAGES', { doc: 'Most messages accepted in one chat request.', default: 256, min: 1 }),
    apiMaxImageBytes: int('GATEWAY_API_MAX_IMAGE_BYTES', {
      doc: "Largest decoded data: image in an OpenAI API request (400 image_too_large above). The whole request is also bounded by GATEWAY_MAX_BODY_BYTES and NATS's 4 MiB message limit.",
      default: 2 * 1024 * 1024,
      min: 1024,
      max: 3 * 1024 * 1024,
    }),

    // Rate limits (token buckets; a minute's allowance may be spent at once).
    rateAddressPerMin: int('GATEWAY_RATE_LIMIT_ADDRESS_PER_MIN', {
      doc: 'API and WebSocket requests per minute from one client address (IPv4-mapped IPv6 folded to IPv4; IPv6 per /64).',
      default: 600,
      min: 1,
    }),
    rateTokenPerMin: int('GATEWAY_RATE_LIMIT_TOKEN_PER_MIN', {
      doc: 'Authenticated requests (and WebSocket chat messages) per minute per API token.',
      default: 300,
      min: 1,
    }),
    authFailuresPerMin: int('GATEWAY_AUTH_FAILURES_PER_MIN', {
      doc: 'Failed authentications (bad token, bad webhook signature) one client address may make per minute before it gets 429 for everything.',
      default: 20,
      min: 1,
    }),
    rateWebhookPerMin: int('GATEWAY_RATE_LIMIT_WEBHOOK_PER_MIN', {
      doc: 'Webhook requests per minute from one client address (platforms send from few addresses, so this is higher).',
      default: 6000,
      min: 1,
    }),

    // WebSocket.
    wsMaxConnections: int('GATEWAY_WS_MAX_CONNECTIONS', { doc: 'Most WebSocket connections open at once.', default: 10_000, min: 1 }),
    wsMaxPerAddress: int('GATEWAY_WS_MAX_PER_ADDRESS', { doc: 'Most WebSocket connections from one client address.', default: 64, min: 1 }),
    wsAuthTimeoutMs: int('GATEWAY_WS_AUTH_TIMEOUT_MS', {
      doc: 'Time a WebSocket client has to authenticate (first message or subprotocol) before it is closed.',
      default: 5000,
      min: 100,
    }),
    wsMaxInflight: int('GATEWAY_WS_MAX_INFLIGHT', { doc: 'Turns one WebSocket connection may have running at once.', default: 4, min: 1 }),

    // Egress (the only way to a chat platform) and its gRPC API.
    egressUrl: url('GATEWAY_EGRESS_URL', {
      doc: 'The egress proxy: replies to chat platforms go out through it (the gateway holds no platform token). Several comma-separated for egress replicas without a load balancer.',
      default: 'https://127.0.0.1:7480',
      protocols: ['https:'],
      many: true,
    }),
    egressAddr: str('GATEWAY_EGRESS_ADDR', {
      doc: 'host:port of egress’s gRPC API (EgressService: webhook signature checks, secret names).',
      default: '127.0.0.1:7406',
    }),

    // Channels.
    channels: list('TALON_CHANNELS', {
      doc: `Chat platforms the gateway connects (${CHANNELS.join(', ')}): their webhooks, or Telegram by long polling (GATEWAY_TELEGRAM_MODE); empty disables all /hooks routes.`,
      default: [],
      item: (v) => (CHANNELS as readonly string[]).includes(v),
      expect: `a comma-separated subset of ${CHANNELS.join(', ')}`,
    }),
    ...channelApiFields(),
    // The model names clients may use (/v1/models, 404 for others); the orchestrator calls them.
    ...llmModelFields(),
    telegramBotTokenSecret: str('GATEWAY_TELEGRAM_BOT_TOKEN_SECRET', {
      doc: 'Vault secret with the Telegram bot token (placement --path, principal gateway, host of TALON_TELEGRAM_API_URL).',
      default: 'telegram_bot_token',
      pattern: SECRET_NAME,
    }),
    telegramWebhookSecret: str('GATEWAY_TELEGRAM_WEBHOOK_SECRET', {
      doc: 'Vault secret with the secret_token given to Telegram setWebhook (checked against X-Telegram-Bot-Api-Secret-Token by the vault).',
      default: 'telegram_webhook_secret',
      pattern: SECRET_NAME,
    }),
    slackMode: oneOf('GATEWAY_SLACK_MODE', ['socket', 'events'] as const, {
      doc: 'How Slack events arrive. socket: Socket Mode, a WebSocket the gateway opens through egress with the app-level token (no public URL; events are acknowledged once queued). events: the Events API POSTs to /hooks/slack (signed with GATEWAY_SLACK_SIGNING_SECRET).',
      default: 'socket',
    }),
    slackAppTokenSecret: str('GATEWAY_SLACK_APP_TOKEN_SECRET', {
      doc: 'Vault secret with the Slack app-level token xapp-… (connections:write; placement --bearer, principal gateway, host of TALON_SLACK_API_URL) for Socket Mode.',
      default: 'slack_app_token',
      pattern: SECRET_NAME,
    }),
    discordMode: oneOf('GATEWAY_DISCORD_MODE', ['gateway', 'interactions'] as const, {
      doc: 'How Discord messages arrive. gateway: the gateway holds a Discord Gateway WebSocket through egress (ordinary channel and DM messages; needs the MESSAGE CONTENT intent; no public URL; /hooks/discord still answers slash commands if you set an interactions URL). interactions: slash commands only, POSTed to /hooks/discord.',
      default: 'gateway',
    }),
    discordGatewayTokenSecret: str('GATEWAY_DISCORD_GATEWAY_TOKEN_SECRET', {
      doc: 'Vault secret with the Discord bot token for the Gateway IDENTIFY (the same token as GATEWAY_DISCORD_BOT_TOKEN_SECRET, stored again with placement --ws-frame, principal gateway, hosts gateway.discord.gg,*.discord.gg).',
      default: 'discord_gateway_token',
      pattern: SECRET_NAME,
    }),
    mattermostBotTokenSecret: str('GATEWAY_MATTERMOST_BOT_TOKEN_SECRET', {
      doc: 'Vault secret with the Mattermost bot’s access token (placement --bearer, principal gateway, host of TALON_MATTERMOST_URL): egress fills it into the WebSocket upgrade and the REST calls.',
      default: 'mattermost_bot_token',
      pattern: SECRET_NAME,
    }),
    telegramMode: oneOf('GATEWAY_TELEGRAM_MODE', ['polling', 'webhook'] as const, {
      doc: 'How Telegram messages arrive. polling: the gateway long-polls getUpdates through egress (no public URL needed; a webhook set for the bot is deleted, and /hooks/telegram is refused). webhook: Telegram POSTs to /hooks/telegram (you call setWebhook with the public URL and the secret_token of GATEWAY_TELEGRAM_WEBHOOK_SECRET). Never both.',
      default: 'polling',
    }),
    telegramPollTimeoutS: int('GATEWAY_TELEGRAM_POLL_TIMEOUT_S', {
      doc: 'Seconds one getUpdates long poll is held open by Telegram when there is nothing new.',
      default: 30,
      min: 1,
      max: 50,
    }),
    channelLeaseTtlMs: int('GATEWAY_CHANNEL_LEASE_TTL_MS', {
      doc: 'Lease of the one replica that polls a bot (NATS KV talon_leases): renewed every third of it; a replica that died is replaced after at most this long (one that stops gives it up at once).',
      default: 15_000,
      min: 300,
      max: 600_000,
    }),
    channelBackoffMs: int('GATEWAY_CHANNEL_RECONNECT_BACKOFF_MS', {
      doc: 'First delay before polling again after a failure (network, 5xx, 429, egress refusal); doubles per failure, with jitter.',
      default: 1000,
      min: 10,
    }),
    channelMaxBackoffMs: int('GATEWAY_CHANNEL_RECONNECT_MAX_BACKOFF_MS', {
      doc: 'Longest delay between polling attempts while a platform keeps failing.',
      default: 60_000,
      min: 10,
    }),
    slackBotTokenSecret: str('GATEWAY_SLACK_BOT_TOKEN_SECRET', {
      doc: 'Vault secret with the Slack bot token xoxb-… (placement --bearer, principal gateway).',
      default: 'slack_bot_token',
      pattern: SECRET_NAME,
    }),
    slackSigningSecret: str('GATEWAY_SLACK_SIGNING_SECRET', {
      doc: 'Vault secret with the Slack app signing secret (v0 HMAC-SHA256 of requests).',
      default: 'slack_signing_secret',
      pattern: SECRET_NAME,
    }),
    discordBotTokenSecret: str('GATEWAY_DISCORD_BOT_TOKEN_SECRET', {
      doc: 'Vault secret with the Discord bot token (placement --header authorization, principal gateway).',
      default: 'discord_bot_token',
      pattern: SECRET_NAME,
    }),
    discordPublicKeySecret: str('GATEWAY_DISCORD_PUBLIC_KEY_SECRET', {
      doc: 'Vault secret with the Discord application public key (hex, as the developer portal shows it) for Ed25519 interaction signatures.',
      default: 'discord_public_key',
      pattern: SECRET_NAME,
    }),
    webhookSigningSecret: str('GATEWAY_WEBHOOK_SIGNING_SECRET', {
      doc: 'Vault secret with the HMAC-SHA256 key of the generic signed webhook (/hooks/webhook).',
      default: 'webhook_signing_secret',
      pattern: SECRET_NAME,
    }),
    webhookCallbackSecret: str('GATEWAY_WEBHOOK_CALLBACK_SECRET', {
      doc: 'Vault secret sent as the bearer token of generic webhook reply callbacks.',
      default: 'webhook_callback_token',
      pattern: SECRET_NAME,
    }),
    whatsappPhoneNumberId: optionalStr('GATEWAY_WHATSAPP_PHONE_NUMBER_ID', {
      doc: 'WhatsApp Cloud API phone number id (Meta app dashboard, WhatsApp > API Setup; not the phone number) replies are sent from; required when TALON_CHANNELS includes whatsapp. Messages to other numbers of the app are ignored.',
      pattern: /^\d{1,32}$/,
    }),
    whatsappAccessTokenSecret: str('GATEWAY_WHATSAPP_ACCESS_TOKEN_SECRET', {
      doc: 'Vault secret with the WhatsApp Cloud API access token (a system user token; placement --bearer, principal gateway, host of TALON_WHATSAPP_API_URL).',
      default: 'whatsapp_access_token',
      pattern: SECRET_NAME,
    }),
    whatsappAppSecret: str('GATEWAY_WHATSAPP_APP_SECRET', {
      doc: 'Vault secret with the Meta app secret (verify-only): the vault checks X-Hub-Signature-256 (HMAC-SHA256 of the raw body) of /hooks/whatsapp with it.',
      default: 'whatsapp_app_secret',
      pattern: SECRET_NAME,
    }),
    whatsappVerifyTokenSecret: str('GATEWAY_WHATSAPP_VERIFY_TOKEN_SECRET', {
      doc: 'Vault secret with the verify token typed into the Meta webhook setup (verify-only): GET /hooks/whatsapp echoes hub.challenge only when hub.verify_token matches it.',
      default: 'whatsapp_verify_token',
      pattern: SECRET_NAME,
    }),
    matrixAccessTokenSecret: str('GATEWAY_MATRIX_ACCESS_TOKEN_SECRET', {
      doc: 'Vault secret with the Matrix bot account’s access token (placement --bearer, principal gateway, host of TALON_MATRIX_HOMESERVER_URL).',
      default: 'matrix_access_token',
      pattern: SECRET_NAME,
    }),
    matrixUserId: optionalStr('GATEWAY_MATRIX_USER_ID', {
      doc: 'The bot’s Matrix user id (@bot:example.org), whose own messages are ignored. Unset: asked of the homeserver (account/whoami) when syncing starts.',
      pattern: /^@[^\s:]{1,200}:[^\s]{1,255}$/,
    }),
    matrixAutoJoin: bool('GATEWAY_MATRIX_AUTO_JOIN', {
      doc: 'Join rooms the bot is invited to (anyone on the federation can invite it; senders still need pairing). Off: an operator joins the bot to rooms (e.g. from a Matrix client logged in as it).',
      default: false,
    }),
    matrixSyncTimeoutS: int('GATEWAY_MATRIX_SYNC_TIMEOUT_S', {
      doc: 'Seconds one Matrix /sync long poll is held open by the homeserver when there is nothing new.',
      default: 30,
      min: 1,
      max: 50,
    }),
    replayWindowS: int('GATEWAY_WEBHOOK_REPLAY_WINDOW_S', {
      doc: 'Signed webhooks (Slack, Discord, generic) older or newer than this many seconds are refused as replays.',
      default: 300,
      min: 10,
      max: 3600,
    }),
    pairingCodeTtlMs: int('GATEWAY_PAIRING_CODE_TTL_MS', {
      doc: 'How long a pairing code given to an unknown sender stays valid.',
      default: 86_400_000,
      min: 60_000,
    }),
    pairingNoticeIntervalMs: int('GATEWAY_PAIRING_NOTICE_INTERVAL_MS', {
      doc: 'An unknown sender is told their pairing code at most once per this interval.',
      default: 600_000,
      min: 0,
    }),

    // Durable delivery of replies to chat platforms.
    deliveryConcurrency: int('GATEWAY_DELIVERY_CONCURRENCY', {
      doc: 'Replies one gateway replica sends to platforms at once.',
      default: 16,
      min: 1,
      max: 1024,
    }),
    deliveryTimeoutMs: int('GATEWAY_DELIVERY_TIMEOUT_MS', { doc: 'Upper bound for one platform API call.', default: 15_000, min: 500 }),
    deliveryBackoffMs: int('GATEWAY_DELIVERY_BACKOFF_MS', {
      doc: 'First retry delay when a platform is slow or down (doubles per attempt, with jitter).',
      default: 1000,
      min: 10,
    }),
    deliveryMaxBackoffMs: int('GATEWAY_DELIVERY_MAX_BACKOFF_MS', { doc: 'Longest retry delay.', default: 300_000, min: 10 }),
    deliveryMaxAgeMs: int('GATEWAY_DELIVERY_MAX_AGE_MS', {
      doc: 'A reply not delivered after this long is given up (recorded as failed).',
      default: 86_400_000,
      min: 1000,
    }),
    deliveryAckWaitMs: int('GATEWAY_DELIVERY_ACK_WAIT_MS', {
      doc: 'JetStream ack wait of the channel reply consumer (the worker extends it while sending).',
      default: 30_000,
      min: 500,
    }),
    hsts: bool('GATEWAY_HSTS', {
      doc: 'Send Strict-Transport-Security (enable when the gateway is served over HTTPS).',
      default: false,
    }),
  };
}

export type GatewayConfig = Omit<ConfigOf<ReturnType<typeof gatewaySpec>>, 'channels'> & { readonly channels: readonly Channel[] };

export function loadGatewayConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  const cfg = loadConfig('gateway', gatewaySpec(env), env) as GatewayConfig;
  if (cfg.channels.includes('matrix') && !cfg.matrixHomeserverUrl) {
    throw new ConfigError('gateway', [
      new ConfigFieldError(
        'TALON_MATRIX_HOMESERVER_URL',
        'is required when TALON_CHANNELS includes matrix',
        'Set it to the homeserver’s client-server API base URL, such as https://matrix.example.org',
      ),
    ]);
  }
  if (cfg.channels.includes('whatsapp') && !cfg.whatsappPhoneNumberId) {
    throw new ConfigError('gateway', [
      new ConfigFieldError(
        'GATEWAY_WHATSAPP_PHONE_NUMBER_ID',
        'is required when TALON_CHANNELS includes whatsapp',
        'Set it to the phone number id of the Meta app dashboard (WhatsApp > API Setup)',
      ),
    ]);
  }
  if (cfg.channels.includes('mattermost') && !cfg.mattermostUrl) {
    throw new ConfigError('gateway', [
      new ConfigFieldError(
        'TALON_MATTERMOST_URL',
        'is required when TALON_CHANNELS includes mattermost',
        'Set it to your Mattermost server’s URL (https://chat.example.com), also in egress’s environment',
      ),
    ]);
  }
  return cfg;
}

/** The gateway's own origins, used when GATEWAY_ALLOWED_ORIGINS is empty. */
export function defaultOrigins(host: string, port: number): string[] {
  const h = host.includes(':') ? `[${host}]` : host;
  const out = new Set([`http://${h}:${port}`]);
  if (['127.0.0.1', 'localhost', '::1', '0.0.0.0', '::'].includes(host)) {
    out.add(`http://127.0.0.1:${port}`);
    out.add(`http://localhost:${port}`);
    out.add(`http://[::1]:${port}`);
  }
  return [...out];
}
