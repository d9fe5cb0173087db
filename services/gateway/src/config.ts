import { commonFields, int, loadConfig, natsFields, port, str, type ConfigOf } from '@talon/kit';

export function gatewaySpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('gateway', env),
    ...natsFields('gateway', env),
    httpHost: str('TALON_GATEWAY_HOST', { doc: 'Address the gateway HTTP server listens on.', default: '127.0.0.1' }),
    httpPort: port('TALON_GATEWAY_PORT', { doc: 'Port of the gateway HTTP server (API, web UI, WebSocket, webhooks).', default: 8080 }),
    maxBodyBytes: int('GATEWAY_MAX_BODY_BYTES', {
      doc: 'Largest request body the gateway accepts (413 above).',
      default: 1024 * 1024,
      min: 1024,
      max: 64 * 1024 * 1024,
    }),
    turnTimeoutMs: int('GATEWAY_TURN_TIMEOUT_MS', {
      doc: 'How long an API request waits for its reply before answering 504 (the turn itself continues).',
      default: 180_000,
      min: 1000,
    }),
    maxMessages: int('GATEWAY_MAX_MESSAGES', { doc: 'Most messages accepted in one chat request.', default: 256, min: 1 }),
  };
}

export type GatewayConfig = ConfigOf<ReturnType<typeof gatewaySpec>>;

export function loadGatewayConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  return loadConfig('gateway', gatewaySpec(env), env);
}
