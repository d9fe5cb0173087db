import { join } from 'node:path';
import { commonFields, DEFAULT_PORTS, natsFields, talonHome } from '@talon/kit/service';
import { int, loadConfig, str, url, type ConfigOf } from '@talon/kit/config';

export function sandboxSpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('sandbox', env),
    ...natsFields('sandbox', env),
    concurrency: int('SANDBOX_CONCURRENCY', {
      doc: 'Most plugin host processes of one sandbox node, i.e. skill calls it runs at once. Hosts are started when calls need them (~80 MiB resident each).',
      default: 4,
      min: 1,
      max: 256,
    }),
    hostIdleMs: int('SANDBOX_HOST_IDLE_MS', {
      doc: 'A plugin host idle this long (ms) is stopped, so an idle node holds no host memory; the next call starts one again (0: never stop).',
      default: 60_000,
      min: 0,
      max: 86_400_000,
    }),
    hostMinIdle: int('SANDBOX_HOST_MIN_IDLE', {
      doc: 'Plugin hosts kept started while the node is idle (started before the node is ready, never stopped for idleness, capped at SANDBOX_CONCURRENCY): latency of a first call over ~80 MiB each.',
      default: 0,
      min: 0,
      max: 256,
    }),
    perSkillConcurrency: int('SANDBOX_PER_SKILL_CONCURRENCY', {
      doc: 'Most plugin hosts one skill version may occupy at once (0: half of SANDBOX_CONCURRENCY, at least 1), so one slow skill cannot starve the others.',
      default: 0,
      min: 0,
      max: 256,
    }),
    queueLimit: int('SANDBOX_QUEUE_LIMIT', {
      doc: 'Calls a node keeps waiting for a free plugin host; beyond it calls are refused with "busy".',
      default: 64,
      min: 0,
      max: 100_000,
    }),
    egressUrl: url('SANDBOX_EGRESS_URL', {
      doc: 'The egress proxy (mTLS) that carries every plugin HTTP request; the node connects with its own certificate. Several comma-separated for egress replicas without a load balancer.',
      default: `https://127.0.0.1:${DEFAULT_PORTS.egressProxy}`,
      protocols: ['https:'],
      many: true,
    }),
    maxMemoryMb: int('SANDBOX_MAX_MEMORY_MB', {
      doc: 'Largest memory (MiB) a skill may be granted on this node; skills asking for more are refused.',
      default: 256,
      min: 1,
      max: 4096,
    }),
    maxTimeoutMs: int('SANDBOX_MAX_TIMEOUT_MS', {
      doc: 'Longest wall-clock time (ms) one skill call may run on this node, whatever its manifest says.',
      default: 60_000,
      min: 10,
      max: 600_000,
    }),
    maxModuleBytes: int('SANDBOX_MAX_MODULE_BYTES', { doc: 'Largest skill .wasm a node loads.', default: 32 * 1024 * 1024, min: 1024 }),
    maxInputBytes: int('SANDBOX_MAX_INPUT_BYTES', { doc: 'Largest JSON input of one call.', default: 256 * 1024, min: 64 }),
    maxOutputBytes: int('SANDBOX_MAX_OUTPUT_BYTES', {
      doc: 'Largest output one call may return (larger outputs fail with output_too_large).',
      default: 1024 * 1024,
      min: 64,
      max: 3 * 1024 * 1024,
    }),
    hostHeapMb: int('SANDBOX_HOST_HEAP_MB', { doc: 'V8 heap limit (MiB) of each plugin host process.', default: 128, min: 32, max: 8192 }),
    hostMaxRssMb: int('SANDBOX_HOST_MAX_RSS_MB', {
      doc: 'Resident memory (MiB) above which a plugin host is killed and replaced (backstop behind the per-skill caps).',
      default: 768,
      min: 64,
      max: 65_536,
    }),
    httpCallsPerInvocation: int('SANDBOX_HTTP_CALLS_PER_INVOCATION', {
      doc: 'HTTP requests one skill call may make; the next one stops the call with rate_limited.',
      default: 32,
      min: 0,
      max: 10_000,
    }),
    httpRatePerSkill: int('SANDBOX_HTTP_RATE_PER_SKILL', {
      doc: 'Sustained HTTP requests per second one skill version may make on one node (burst: twice this).',
      default: 20,
      min: 1,
      max: 100_000,
    }),
    maxHttpRequestBytes: int('SANDBOX_MAX_HTTP_REQUEST_BYTES', {
      doc: 'Largest HTTP request body a skill may send.',
      default: 1024 * 1024,
      min: 1024,
    }),
    maxHttpResponseBytes: int('SANDBOX_MAX_HTTP_RESPONSE_BYTES', {
      doc: 'Largest HTTP response body handed to a skill (larger responses fail with payload_too_large).',
      default: 2 * 1024 * 1024,
      min: 1024,
    }),
    cacheDir: str('SANDBOX_CACHE_DIR', {
      doc: 'Directory caching verified skill binaries (re-hashed on every read).',
      default: join(talonHome(env), 'sandbox', 'cache'),
    }),
    cacheMb: int('SANDBOX_CACHE_MB', { doc: 'Memory (MiB) for cached skill binaries per node.', default: 256, min: 1 }),
  };
}

export type SandboxConfig = ConfigOf<ReturnType<typeof sandboxSpec>>;

export function loadSandboxConfig(env: Record<string, string | undefined> = process.env): SandboxConfig {
  return loadConfig('sandbox', sandboxSpec(env), env);
}
