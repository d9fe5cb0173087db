// A plugin host: a child process of a sandbox node that runs one plugin call at a
// time with Extism (foreground, async host functions through JSPI). It has no
// credentials, no environment, no filesystem beyond its own code (Node permission
// model) and no network client; the parent kills it on timeout or excess memory and
// starts a fresh one. Every call gets a fresh plugin instance, so nothing a plugin
// keeps in memory or Extism vars survives into another user's call.
import { Worker } from 'node:worker_threads';
import createPlugin, { type CallContext, type Plugin } from '@extism/extism';
import { validateInput } from '@talon/records/skills/schema';
import type { FromChild, RunJob, ToChild } from './protocol.ts';

const send = (m: FromChild): void => {
  process.send?.(m);
};

// If the node dies (even by SIGKILL) while a plugin spins, nothing on this thread runs
// again. Normally the kernel kills this process then (setpriv --pdeathsig, see pool.ts);
// without setpriv a watchdog thread notices the orphaning and ends the process.
if (process.argv.includes('--watchdog')) {
  new Worker(new URL('./orphan-watchdog.ts', import.meta.url), { workerData: { parentPid: process.ppid } }).unref();
}

class PluginFault extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'PluginFault';
    this.code = code;
  }
}

interface CachedModule {
  module: WebAssembly.Module;
  hostCalls: boolean;
  spare: Promise<Instance> | undefined;
}

interface Instance {
  plugin: Plugin;
  state: CallState;
}

/** Per-instance (hence per-call) bookkeeping used by the host functions. */
interface CallState {
  jobId: number;
  allocated: number;
  limits: RunJob['limits'] | undefined;
  logs: string[];
  memory: WebAssembly.Memory | undefined;
  /** Memory size when the instance was created: growth during the call tells a memory-cap trap from any other. */
  initialBytes: number;
  fault: PluginFault | undefined;
}

const MODULE_CACHE_LIMIT = 32;
const noop = (): void => undefined;
// Extism's own diagnostics would only echo plugin-controlled text into the node's logs.
const SILENT = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop } as unknown as Console;
const modules = new Map<string, CachedModule>();
const schemas = new Map<string, unknown>();
const pendingHostCalls = new Map<number, { resolve: (v: string) => void; reject: (e: Error) => void }>();
let nextCallId = 1;
let current: RunJob | undefined;

function remember(sha256: string, entry: CachedModule): void {
  modules.delete(sha256);
  modules.set(sha256, entry);
  while (modules.size > MODULE_CACHE_LIMIT) {
    const oldest = modules.keys().next().value as string;
    modules.delete(oldest);
  }
}

/** Reads an AssemblyScript string (UTF-16, byte length at ptr-4) from the plugin's memory, bounded. */
function readAsString(mem: WebAssembly.Memory | undefined, ptr: number): string {
  if (!mem || ptr < 4 || ptr >= mem.buffer.byteLength) return '';
  const len = new DataView(mem.buffer).getUint32(ptr - 4, true);
  const end = Math.min(ptr + Math.min(len, 400), mem.buffer.byteLength);
  return Buffer.from(mem.buffer.slice(ptr, end)).toString('utf16le');
}

function hostCall(state: CallState, fn: string, payload: string): Promise<string> {
  const callId = nextCallId++;
  return new Promise<string>((resolve, reject) => {
    pendingHostCalls.set(callId, { resolve, reject });
    send({ t: 'host-call', id: state.jobId, callId, fn, payload });
  });
}

/** Whether the module imports talon_http_request (only then does a call need JSPI stack switching). */
function usesHostCalls(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some((i) => i.module === 'extism:host/user' && i.name === 'talon_http_request');
}

function newInstance(module: WebAssembly.Module, hostCalls: boolean): Promise<Instance> {
  const state: CallState = { jobId: 0, allocated: 0, limits: undefined, logs: [], memory: undefined, initialBytes: 0, fault: undefined };
  const fault = (code: string, message: string): never => {
    state.fault ??= new PluginFault(code, message);
    throw state.fault;
  };
  const log = (level: string) => (ctx: CallContext, addr: bigint) => {
    const text = ctx.read(addr)?.text() ?? '';
    if (state.limits && state.logs.length < state.limits.maxLogLines) state.logs.push(`${level}: ${text.slice(0, 500)}`);
  };
  const disabled = (name: string) => () =>
    fault('import_not_allowed', `${name} is disabled in Talon; make HTTP requests with talon_http_request (they go through egress)`);
  const functions = {
    // Overrides of Extism kernel functions (same object the kernel exposes).
    'extism:host/env': {
      alloc: (ctx: CallContext, n: bigint) => {
        const size = Number(n);
        const cap = state.limits?.maxAllocBytes ?? 0;
        if (!Number.isSafeInteger(size) || size < 0 || state.allocated + size > cap) {
          fault('memory_limit', `the plugin asked the host for more than its ${Math.round(cap / 1048576)} MiB allocation limit`);
        }
        state.allocated += size;
        return ctx.alloc(size);
      },
      log_trace: log('trace'),
      log_debug: log('debug'),
      log_info: log('info'),
      log_warn: log('warn'),
      log_error: log('error'),
      http_request: disabled('extism http_request'),
      http_status_code: disabled('extism http_status_code'),
      http_headers: disabled('extism http_headers'),
    },
    // Extism runs every call of a plugin with an async host function through JSPI;
    // a pure skill gets none, and plain synchronous calls.
    'extism:host/user': (hostCalls
      ? {
          talon_http_request: async (ctx: CallContext, addr: bigint): Promise<bigint> => {
            const req = ctx.read(addr)?.text();
            if (req === undefined) return fault('plugin_error', 'talon_http_request was called with an invalid memory block');
            const res = await hostCall(state, 'talon_http_request', req);
            return ctx.store(res);
          },
        }
      : {}) as Record<string, (ctx: CallContext, addr: bigint) => Promise<bigint>>,
    env: {
      abort: (_ctx: CallContext, msg: number, file: number, line: number, col: number) => {
        const text = readAsString(state.memory, msg);
        const where = readAsString(state.memory, file);
        fault(
          /out of memory|allocation too large/i.test(text) ? 'memory_limit' : 'trap',
          `plugin aborted: ${text || 'abort'}${where ? ` at ${where}:${line}:${col}` : ''}`,
        );
      },
    },
  };
  return createPlugin(
    { wasm: [{ module }] },
    {
      useWasi: false,
      runInWorker: false,
      allowedHosts: [],
      allowedPaths: {},
      config: {},
      logLevel: 'error',
      logger: SILENT,
      enableWasiOutput: false,
      fetch: (() => Promise.reject(new Error('no network in a plugin host'))) as typeof fetch,
      memory: { maxVarBytes: 1024 * 1024, maxHttpResponseBytes: 0 },
      functions,
    },
  ).then(async (plugin) => {
    const exp = (await plugin.getInstance()).exports;
    state.memory = Object.values(exp).find((e): e is WebAssembly.Memory => e instanceof WebAssembly.Memory);
    state.initialBytes = state.memory?.buffer.byteLength ?? 0;
    return { plugin, state };
  });
}

function classify(err: unknown, inst: Instance | undefined, job: RunJob): { code: string; message: string } {
  if (inst?.state.fault) return { code: inst.state.fault.code, message: inst.state.fault.message };
  if (err instanceof PluginFault) return { code: err.code, message: err.message };
  const e = err as Error;
  const msg = String(e?.message ?? err);
  if (e instanceof RangeError && /call stack/i.test(msg))
    return { code: 'trap', message: 'stack overflow: the plugin recursed too deeply' };
  if (msg.startsWith('Plugin-originated error: ')) return { code: 'plugin_error', message: msg.slice(25, 1025) };
  if (e instanceof WebAssembly.RuntimeError || e instanceof WebAssembly.LinkError || e instanceof WebAssembly.CompileError) {
    const mem = inst?.state.memory;
    // A trap after the memory grew to (nearly) its declared maximum: memory.grow failed and the plugin gave up.
    const grew = mem !== undefined && inst !== undefined && mem.buffer.byteLength > inst.state.initialBytes;
    if (mem && grew && job.maxPages > 0 && mem.buffer.byteLength >= job.maxPages * 65536 * 0.9) {
      const used = (mem.buffer.byteLength / 1048576).toFixed(1);
      return {
        code: 'memory_limit',
        message: `the plugin trapped (${msg}) with ${used} of its ${Math.round((job.maxPages * 65536) / 1048576)} MiB memory in use`,
      };
    }
    return {
      code: e instanceof WebAssembly.RuntimeError ? 'trap' : 'refused_module',
      message: `wasm ${e.name.replace('WebAssembly.', '')}: ${msg}`.slice(0, 500),
    };
  }
  if (/memory limit exceeded|var memory limit/i.test(msg)) return { code: 'memory_limit', message: msg.slice(0, 300) };
  return { code: 'trap', message: `the plugin failed: ${msg.slice(0, 300)}` };
}

async function run(job: RunJob): Promise<void> {
  const t0 = performance.now();
  let inst: Instance | undefined;
  const done = (r: Omit<Extract<FromChild, { t: 'done' }>, 't' | 'id' | 'logs' | 'elapsedUs'>) => {
    send({ t: 'done', id: job.id, logs: inst?.state.logs ?? [], elapsedUs: Math.round((performance.now() - t0) * 1000), ...r });
  };
  try {
    let input: unknown;
    try {
      input = JSON.parse(job.input);
    } catch {
      done({ ok: false, error: { code: 'invalid_argument', message: 'input is not valid JSON' } });
      return;
    }
    let schema = schemas.get(job.inputSchema);
    if (schema === undefined) {
      schema = JSON.parse(job.inputSchema) as unknown;
      schemas.set(job.inputSchema, schema);
      if (schemas.size > 256) schemas.delete(schemas.keys().next().value!);
    }
    const problems = validateInput(schema, input);
    if (problems.length > 0) {
      done({ ok: false, error: { code: 'invalid_argument', message: `input does not match the skill's schema: ${problems.join('; ')}` } });
      return;
    }
    let cached = modules.get(job.sha256);
    if (!cached) {
      const bytes = job.wasm ?? (await requestWasm(job));
      const module = await WebAssembly.compile(bytes);
      cached = { module, hostCalls: usesHostCalls(module), spare: undefined };
    }
    remember(job.sha256, cached);
    const pending = cached.spare ?? newInstance(cached.module, cached.hostCalls);
    cached.spare = undefined;
    inst = await pending;
    inst.state.jobId = job.id;
    inst.state.limits = job.limits;
    const out = await inst.plugin.call(job.entrypoint, job.input);
    const bytes = out ? out.bytes() : new Uint8Array(0);
    if (bytes.byteLength > job.limits.maxOutputBytes) {
      done({
        ok: false,
        error: {
          code: 'output_too_large',
          message: `the plugin returned ${bytes.byteLength} bytes; the limit is ${job.limits.maxOutputBytes}`,
        },
      });
      return;
    }
    done({ ok: true, output: bytes.slice() });
  } catch (err) {
    done({ ok: false, error: classify(err, inst, job) });
  } finally {
    if (inst) void inst.plugin.close().catch(() => undefined);
    current = undefined;
    prewarm(job.sha256, job.id);
  }
}

/** Prepares the next call's fresh instance off the critical path, then reports idle. */
function prewarm(sha256: string, afterJob: number): void {
  const cached = modules.get(sha256);
  if (cached && !cached.spare) {
    const spare = newInstance(cached.module, cached.hostCalls);
    cached.spare = spare;
    spare.then(
      () => send({ t: 'idle', id: afterJob }),
      () => {
        if (cached.spare === spare) cached.spare = undefined;
        send({ t: 'idle', id: afterJob });
      },
    );
  } else send({ t: 'idle', id: afterJob });
}

const wasmWaiters = new Map<number, (w: Uint8Array) => void>();
function requestWasm(job: RunJob): Promise<Uint8Array> {
  return new Promise((resolve) => {
    wasmWaiters.set(job.id, resolve);
    send({ t: 'need-wasm', id: job.id, sha256: job.sha256 });
  });
}

process.on('message', (m: ToChild) => {
  switch (m.t) {
    case 'run':
      if (current) return; // the parent never overlaps calls; ignore a protocol slip rather than corrupt state
      current = m;
      void run(m);
      break;
    case 'wasm': {
      const w = wasmWaiters.get(m.id);
      wasmWaiters.delete(m.id);
      w?.(m.wasm);
      break;
    }
    case 'host-res': {
      const p = pendingHostCalls.get(m.callId);
      pendingHostCalls.delete(m.callId);
      if (!p) return;
      if (m.fatal) p.reject(new PluginFault(m.fatal.code, m.fatal.message));
      else p.resolve(m.result ?? '');
      break;
    }
  }
});
process.on('disconnect', () => process.exit(0));
send({ t: 'ready' });
