import { commonFields, int, isHostPort, list, loadConfig, natsFields, optionalStr, port, str, url, type ConfigOf } from '@talon/kit';

export function egressSpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('egress', env),
    ...natsFields('egress', env),
    proxyHost: str('EGRESS_PROXY_HOST', { doc: 'Address the egress forward proxy (mTLS) listens on.', default: '127.0.0.1' }),
    proxyPort: port('EGRESS_PROXY_PORT', { doc: 'Port of the egress forward proxy.', default: 7480 }),
    allowPrivate: list('TALON_EGRESS_ALLOW_PRIVATE', {
      doc: 'host:port destinations egress may reach although they are private, loopback or link-local (local LLM servers, test fakes). Comma-separated.',
      default: [],
      item: isHostPort,
      expect: 'a comma-separated list of host:port entries (e.g. 127.0.0.1:11434)',
    }),
    llmBaseUrl: url('TALON_LLM_BASE_URL', {
      doc: 'Base URL of the LLM API (OpenAI-compatible or Anthropic).',
      default: 'https://api.openai.com/v1',
    }),
    policyFile: optionalStr('EGRESS_POLICY_FILE', {
      doc: 'Optional JSON file {"rules":[{"principal","host","port","methods"}]} adding destinations per principal (default deny otherwise).',
    }),
    upstreamCaFile: optionalStr('EGRESS_UPSTREAM_CA_FILE', {
      doc: 'Optional PEM bundle of extra CAs trusted for upstream TLS (private PKI).',
    }),
    maxRequestBytes: int('EGRESS_MAX_REQUEST_BYTES', {
      doc: 'Largest request body egress forwards (413 above).',
      default: 10 * 1024 * 1024,
      min: 1024,
    }),
    connectTimeoutMs: int('EGRESS_CONNECT_TIMEOUT_MS', { doc: 'Upstream connect timeout.', default: 10_000, min: 100 }),
    headersTimeoutMs: int('EGRESS_HEADERS_TIMEOUT_MS', {
      doc: 'Time allowed for upstream response headers (504 after).',
      default: 120_000,
      min: 100,
    }),
    bodyTimeoutMs: int('EGRESS_BODY_TIMEOUT_MS', { doc: 'Max idle time between upstream body chunks.', default: 120_000, min: 100 }),
  };
}

export type EgressConfig = ConfigOf<ReturnType<typeof egressSpec>>;

export function loadEgressConfig(env: Record<string, string | undefined> = process.env): EgressConfig {
  return loadConfig('egress', egressSpec(env), env);
}
