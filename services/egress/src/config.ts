import { join } from 'node:path';
import { channelApiFields, commonFields, natsFields, talonHome } from '@talon/kit/service';
import { int, isHostPort, list, loadConfig, optionalStr, port, str, type ConfigOf } from '@talon/kit/config';
import { llmModelFields } from '@talon/kit/models';

export function egressSpec(env: Record<string, string | undefined> = process.env) {
  const home = talonHome(env);
  return {
    ...commonFields('egress', env),
    ...natsFields('egress', env),
    proxyHost: str('EGRESS_PROXY_HOST', {
      doc: 'Address the egress forward proxy (TLS, client certificates) listens on.',
      default: '127.0.0.1',
    }),
    proxyPort: port('EGRESS_PROXY_PORT', { doc: 'Port of the egress forward proxy.', default: 7480 }),
    plainProxyPort: port('EGRESS_PLAIN_PROXY_PORT', {
      doc: 'Optional plain-HTTP proxy port on the same host for tools that cannot do TLS to a proxy; they must send a proxy credential. 0 disables it.',
      default: 0,
    }),
    allowPrivate: list('TALON_EGRESS_ALLOW_PRIVATE', {
      doc: 'host:port destinations egress may reach although they are private, loopback or link-local (local LLM servers, test fakes). Comma-separated.',
      default: [],
      item: isHostPort,
      expect: 'a comma-separated list of host:port entries (e.g. 127.0.0.1:11434)',
    }),
    // Every provider host of every model is allowed for the orchestrator.
    ...llmModelFields(),
    ...channelApiFields(),
    embeddingsBaseUrl: optionalStr('TALON_EMBEDDINGS_BASE_URL', {
      doc: 'Base URL of a remote OpenAI-compatible embeddings API, when one is used.',
    }),
    policyFile: optionalStr('EGRESS_POLICY_FILE', {
      doc: 'Optional JSON file {"rules":[{"principal","host","port","methods"}]} adding destinations per principal (default deny otherwise).',
    }),
    vaultAddr: str('EGRESS_VAULT_ADDR', {
      doc: 'host:port of the vault gRPC service (several comma-separated for replicas).',
      default: '127.0.0.1:7404',
    }),
    vaultRetryMaxMs: int('EGRESS_VAULT_RETRY_MAX_MS', {
      doc: "Longest wait between attempts to reopen the vault's Watch stream (or reload the scan index) after a failure; the first is 100 ms, doubled each time. Changes themselves are pushed by the vault, never polled.",
      default: 5000,
      min: 100,
      max: 60_000,
    }),
    secretCacheMs: int('EGRESS_SECRET_CACHE_MS', {
      doc: 'How long egress may reuse a value the vault released for the same secret, caller, host and placement (dropped at once on any vault change, seal or outage, as the vault pushes it). 0: ask the vault for every request.',
      default: 5000,
      min: 0,
      max: 300_000,
    }),
    caDir: str('EGRESS_CA_DIR', {
      doc: 'Directory of the TLS interception CA, in mitmproxy layout (mitmproxy-ca.pem, mitmproxy-ca-cert.pem/.cer/.p12); an existing mitmproxy CA there is used as-is.',
      default: join(home, 'egress', 'ca'),
    }),
    credentialsFile: str('EGRESS_PROXY_CREDENTIALS_FILE', {
      doc: 'JSON file of per-principal proxy credentials (SHA-256 hashes only), written by `talon egress credential`.',
      default: join(home, 'egress', 'proxy-credentials.json'),
    }),
    upstreamProxy: optionalStr('EGRESS_UPSTREAM_PROXY', {
      doc: 'Chain every outbound request through this proxy (http://[user:pass@]host:port), e.g. a corporate proxy or mitmdump.',
      secret: true,
      pattern: /^https?:\/\//,
    }),
    upstreamCaFile: optionalStr('EGRESS_UPSTREAM_CA_FILE', {
      doc: 'PEM bundle of extra CAs trusted for upstream TLS (private PKI, or the upstream proxy’s CA); added to the public roots.',
    }),
    dnsServers: list('EGRESS_DNS_SERVERS', {
      doc: 'DNS servers (ip:port) egress resolves destinations with; empty uses the system resolver.',
      default: [],
      item: isHostPort,
      expect: 'a comma-separated list of ip:port entries',
    }),
    scanDisabledRules: list('EGRESS_SCAN_DISABLE_RULES', {
      doc: 'Leak-scanner rule ids to switch off (e.g. jwt where JWTs are forwarded on purpose); exact matching of vault secrets always stays on.',
      default: [],
    }),
    maxRequestBytes: int('EGRESS_MAX_REQUEST_BYTES', {
      doc: 'Largest request body egress forwards (413 above).',
      default: 10 * 1024 * 1024,
      min: 1024,
    }),
    maxTunnels: int('EGRESS_MAX_TUNNELS', { doc: 'Most CONNECT tunnels open at once (503 above).', default: 512, min: 1 }),
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
