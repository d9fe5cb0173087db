// Static inspection of a skill's WebAssembly module, without compiling it: its
// imports, exports, memories and tables, read straight from the binary. Both the
// CLI (install) and every sandbox node (before each load) run the same policy check,
// so a module that slipped into the store some other way is still refused.
import { SkillPackageError } from './errors.ts';

/** Extism kernel functions a plugin may import. Extism's own http_request/http_status_code/http_headers are NOT here: the only way out is talon_http_request, through egress. */
export const EXTISM_KERNEL_FUNCTIONS: readonly string[] = [
  'alloc',
  'free',
  'length',
  'length_unsafe',
  'load_u8',
  'load_u64',
  'store_u8',
  'store_u64',
  'input_offset',
  'input_length',
  'input_load_u8',
  'input_load_u64',
  'output_set',
  'error_set',
  'error_get',
  'config_get',
  'var_get',
  'var_set',
  'log_trace',
  'log_debug',
  'log_info',
  'log_warn',
  'log_error',
  'get_log_level',
];
export const EXTISM_ENV = 'extism:host/env';
export const TALON_HOST_MODULE = 'extism:host/user';
/** Talon's host functions (namespace extism:host/user). */
export const TALON_HOST_FUNCTIONS: readonly string[] = ['talon_http_request'];

/** Every import a skill module may have, as "module::name". */
export const ALLOWED_IMPORTS: ReadonlySet<string> = new Set([
  ...EXTISM_KERNEL_FUNCTIONS.map((f) => `${EXTISM_ENV}::${f}`),
  ...TALON_HOST_FUNCTIONS.map((f) => `${TALON_HOST_MODULE}::${f}`),
  // AssemblyScript's abort hook: the host turns it into a trap with the message.
  'env::abort',
]);

export const WASM_PAGE_BYTES = 65_536;
export const TABLE_MAX_ELEMENTS = 100_000;

export type ExternKind = 'function' | 'table' | 'memory' | 'global' | 'tag';
const KINDS: readonly ExternKind[] = ['function', 'table', 'memory', 'global', 'tag'];

export interface Limits {
  min: number;
  max: number | undefined;
  shared: boolean;
  is64: boolean;
}

export interface ModuleInfo {
  imports: Array<{ module: string; name: string; kind: ExternKind }>;
  exports: Array<{ name: string; kind: ExternKind }>;
  memories: Limits[];
  tables: Limits[];
  /** Sum of the declared maximum pages of the module's own memories (undefined if any is unbounded). */
  maxPages: number | undefined;
  size: number;
}

class Reader {
  pos = 0;
  readonly buf: Uint8Array;
  readonly end: number;
  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }
  byte(): number {
    if (this.pos >= this.end) throw new SkillPackageError('module_invalid', 'the module is truncated (not a valid WebAssembly binary)');
    return this.buf[this.pos++]!;
  }
  /** Unsigned LEB128 up to 64 bits, returned as a number (exact up to 2^53). */
  uleb(maxBits = 32): number {
    let result = 0;
    let mul = 1;
    for (let shift = 0; shift < maxBits + 7; shift += 7) {
      const b = this.byte();
      result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) return result;
    }
    throw new SkillPackageError('module_invalid', 'malformed LEB128 integer in the module');
  }
  name(): string {
    const len = this.uleb();
    if (this.pos + len > this.end) throw new SkillPackageError('module_invalid', 'a name runs past the end of its section');
    const s = new TextDecoder('utf-8', { fatal: true }).decode(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
  limits(): Limits {
    const flags = this.byte();
    if (flags > 0x07)
      throw new SkillPackageError('module_invalid', `unsupported limits flags 0x${flags.toString(16)} (custom page sizes?)`);
    const is64 = (flags & 0x04) !== 0;
    const bits = is64 ? 64 : 32;
    const min = this.uleb(bits);
    const max = flags & 0x01 ? this.uleb(bits) : undefined;
    return { min, max, shared: (flags & 0x02) !== 0, is64 };
  }
  skipValType(): void {
    const t = this.byte();
    // (ref null? ht) types carry a heap type index.
    if (t === 0x63 || t === 0x64) this.skipLeb();
  }
  skipLeb(): void {
    let b: number;
    do b = this.byte();
    while (b & 0x80);
  }
}

/** Reads imports, exports, memories and tables from a module binary. Throws SkillPackageError('module_invalid'). */
export function inspectModule(bytes: Uint8Array): ModuleInfo {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new SkillPackageError('module_invalid', 'not a WebAssembly module (missing \\0asm header)');
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new SkillPackageError('module_invalid', 'only WebAssembly core modules version 1 are supported (components are not)');
  }
  const info: ModuleInfo = { imports: [], exports: [], memories: [], tables: [], maxPages: 0, size: bytes.length };
  const r = new Reader(bytes, 8);
  while (r.pos < r.end) {
    const id = r.byte();
    const size = r.uleb();
    const start = r.pos;
    const end = start + size;
    if (end > bytes.length) throw new SkillPackageError('module_invalid', `section ${id} runs past the end of the module`);
    const s = new Reader(bytes, start, end);
    switch (id) {
      case 2: {
        const n = s.uleb();
        for (let i = 0; i < n; i++) {
          const module = s.name();
          const name = s.name();
          const kindByte = s.byte();
          const kind = KINDS[kindByte];
          if (!kind) throw new SkillPackageError('module_invalid', `import ${module}::${name} has unknown kind ${kindByte}`);
          info.imports.push({ module, name, kind });
          if (kind === 'function') s.uleb();
          else if (kind === 'table') {
            s.skipValType();
            s.limits();
          } else if (kind === 'memory') s.limits();
          else if (kind === 'global') {
            s.skipValType();
            s.byte();
          } else {
            s.byte();
            s.uleb();
          }
        }
        break;
      }
      case 4: {
        const n = s.uleb();
        for (let i = 0; i < n; i++) {
          // 0x40 0x00 prefix: table with an initialiser expression (not used by our toolchains).
          if (bytes[s.pos] === 0x40) throw new SkillPackageError('module_invalid', 'tables with initialiser expressions are not supported');
          s.skipValType();
          info.tables.push(s.limits());
        }
        break;
      }
      case 5: {
        const n = s.uleb();
        for (let i = 0; i < n; i++) info.memories.push(s.limits());
        break;
      }
      case 7: {
        const n = s.uleb();
        for (let i = 0; i < n; i++) {
          const name = s.name();
          const kindByte = s.byte();
          s.uleb();
          const kind = KINDS[kindByte];
          if (!kind) throw new SkillPackageError('module_invalid', `export ${name} has unknown kind ${kindByte}`);
          info.exports.push({ name, kind });
        }
        break;
      }
      default:
        break;
    }
    r.pos = end;
  }
  let total = 0;
  for (const m of info.memories) {
    if (m.max === undefined) {
      total = Number.NaN;
      break;
    }
    total += m.max;
  }
  info.maxPages = Number.isNaN(total) ? undefined : total;
  return info;
}

export interface ModulePolicy {
  /** Memory the manifest requests (MiB); the module's declared maximum must fit. */
  manifestMemoryMb: number;
  /** Operator/node cap (MiB) the manifest's request must fit. */
  memoryCapMb: number;
  maxModuleBytes: number;
  entrypoint: string;
}

const WASI_HINTS: ReadonlyArray<[RegExp, string]> = [
  [/^(fd_|path_)/, 'filesystem'],
  [/^sock_/, 'sockets'],
  [/^(environ_|args_)/, 'environment'],
  [/^(clock_|random_get|poll_oneoff|sched_yield)/, 'clock/randomness'],
  [/^proc_/, 'process control'],
];

function wasiCategory(name: string): string {
  for (const [re, what] of WASI_HINTS) if (re.test(name)) return what;
  return 'system interface';
}

/** Applies Talon's module policy; throws SkillPackageError with the first violated rule. */
export function checkModulePolicy(info: ModuleInfo, policy: ModulePolicy): void {
  if (info.size > policy.maxModuleBytes) {
    throw new SkillPackageError('module_too_large', `the module is ${info.size} bytes; the limit is ${policy.maxModuleBytes}`);
  }
  const wasi = info.imports.filter((i) => i.module.startsWith('wasi'));
  if (wasi.length > 0) {
    const cats = [...new Set(wasi.map((i) => wasiCategory(i.name)))].join(', ');
    throw new SkillPackageError(
      'wasi_import',
      `the module imports WASI (${cats}: ${wasi
        .slice(0, 6)
        .map((i) => `${i.module}::${i.name}`)
        .join(
          ', ',
        )}${wasi.length > 6 ? ', ...' : ''}); skills get no filesystem, sockets, environment, clock or randomness. Rebuild without WASI (e.g. AssemblyScript without wasi-shim)`,
    );
  }
  const notFunctions = info.imports.filter((i) => i.kind !== 'function');
  if (notFunctions.length > 0) {
    throw new SkillPackageError(
      'import_not_allowed',
      `the module imports ${notFunctions.map((i) => `${i.kind} ${i.module}::${i.name}`).join(', ')}; skills may import host functions only (their memory must be their own)`,
    );
  }
  const foreign = info.imports.filter((i) => !ALLOWED_IMPORTS.has(`${i.module}::${i.name}`));
  if (foreign.length > 0) {
    throw new SkillPackageError(
      'import_not_allowed',
      `the module imports host functions Talon does not provide: ${foreign
        .slice(0, 8)
        .map((i) => `${i.module}::${i.name}`)
        .join(
          ', ',
        )}. Allowed: the Extism kernel (${EXTISM_ENV}, except http_*), ${TALON_HOST_MODULE}::${TALON_HOST_FUNCTIONS.join(', ')} and env::abort`,
    );
  }
  for (const m of info.memories) {
    if (m.shared || m.is64) throw new SkillPackageError('module_invalid', 'shared and 64-bit memories are not supported');
    if (m.max === undefined) {
      throw new SkillPackageError(
        'memory_unbounded',
        'the module declares no maximum memory size; rebuild it with one (AssemblyScript: --maximumMemory <pages>)',
      );
    }
  }
  const declaredMb = ((info.maxPages ?? 0) * WASM_PAGE_BYTES) / (1024 * 1024);
  if (policy.manifestMemoryMb > policy.memoryCapMb) {
    throw new SkillPackageError(
      'memory_too_large',
      `the manifest asks for ${policy.manifestMemoryMb} MiB of memory; this installation allows at most ${policy.memoryCapMb} MiB`,
    );
  }
  if (declaredMb > policy.manifestMemoryMb) {
    throw new SkillPackageError(
      'memory_too_large',
      `the module may grow to ${declaredMb} MiB but the manifest requests ${policy.manifestMemoryMb} MiB; lower --maximumMemory or raise permissions.memoryMb`,
    );
  }
  for (const t of info.tables) {
    if (t.max === undefined || t.max > TABLE_MAX_ELEMENTS) {
      throw new SkillPackageError(
        'table_unbounded',
        `the module declares a table without a maximum (or above ${TABLE_MAX_ELEMENTS} elements); tables must be bounded`,
      );
    }
  }
  if (!info.exports.some((e) => e.name === policy.entrypoint && e.kind === 'function')) {
    throw new SkillPackageError('entrypoint_missing', `the module exports no function "${policy.entrypoint}" (the manifest's entrypoint)`);
  }
}
