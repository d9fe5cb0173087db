import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import wabtInit from 'wabt';
import { SkillPackageError, type RefusalReason } from './errors.ts';
import { checkModulePolicy, inspectModule, type ModulePolicy } from './inspect.ts';

let wat: (src: string) => Uint8Array;
before(async () => {
  const wabt = await wabtInit();
  wat = (src) => {
    const m = wabt.parseWat('t.wat', src, { reference_types: true, bulk_memory: true, multi_value: true });
    try {
      return m.toBinary({}).buffer;
    } finally {
      m.destroy();
    }
  };
});

const POLICY: ModulePolicy = { manifestMemoryMb: 16, memoryCapMb: 256, maxModuleBytes: 1 << 20, entrypoint: 'run' };
const RUN = '(func (export "run") (result i32) (i32.const 0))';

function refusedFor(bytes: Uint8Array, reason: RefusalReason, pattern: RegExp, policy: Partial<ModulePolicy> = {}): void {
  assert.throws(
    () => checkModulePolicy(inspectModule(bytes), { ...POLICY, ...policy }),
    (e: unknown) => e instanceof SkillPackageError && e.reason === reason && pattern.test(e.message),
  );
}

describe('module inspection', () => {
  it('reads imports, exports, memories and tables like the engine does', () => {
    const bytes = wat(`(module
      (import "extism:host/env" "alloc" (func (param i64) (result i64)))
      (import "extism:host/user" "talon_http_request" (func (param i64) (result i64)))
      (memory (export "memory") 2 32) (table 3 7 funcref) ${RUN})`);
    const info = inspectModule(bytes);
    const mod = new WebAssembly.Module(bytes);
    assert.deepEqual(
      info.imports.map((i) => `${i.module}::${i.name}:${i.kind}`),
      WebAssembly.Module.imports(mod).map((i) => `${i.module}::${i.name}:${i.kind}`),
    );
    assert.deepEqual(
      info.exports.map((e) => `${e.name}:${e.kind}`),
      WebAssembly.Module.exports(mod).map((e) => `${e.name}:${e.kind}`),
    );
    assert.deepEqual(info.memories, [{ min: 2, max: 32, shared: false, is64: false }]);
    assert.deepEqual(info.tables, [{ min: 3, max: 7, shared: false, is64: false }]);
    assert.equal(info.maxPages, 32);
    assert.doesNotThrow(() => checkModulePolicy(info, POLICY));
  });

  it('refuses WASI imports and names what they would reach', () => {
    refusedFor(wat(`(module (import "wasi_snapshot_preview1" "path_open" (func)) (memory 1 1) ${RUN})`), 'wasi_import', /filesystem/);
    refusedFor(wat(`(module (import "wasi_snapshot_preview1" "sock_send" (func)) (memory 1 1) ${RUN})`), 'wasi_import', /sockets/);
    refusedFor(wat(`(module (import "wasi_snapshot_preview1" "environ_get" (func)) (memory 1 1) ${RUN})`), 'wasi_import', /environment/);
    refusedFor(wat(`(module (import "wasi_snapshot_preview1" "random_get" (func)) (memory 1 1) ${RUN})`), 'wasi_import', /randomness/);
  });

  it('refuses host functions outside the allowed set, including Extism http', () => {
    refusedFor(wat(`(module (import "extism:host/user" "talon_exec" (func)) (memory 1 1) ${RUN})`), 'import_not_allowed', /talon_exec/);
    refusedFor(wat(`(module (import "extism:host/env" "http_request" (func)) (memory 1 1) ${RUN})`), 'import_not_allowed', /http_request/);
    refusedFor(wat(`(module (import "env" "seed" (func (result f64))) (memory 1 1) ${RUN})`), 'import_not_allowed', /env::seed/);
    refusedFor(wat(`(module (import "env" "memory" (memory 1)) ${RUN})`), 'import_not_allowed', /memory env::memory/);
  });

  it('requires bounded memories and tables within the manifest and the installation cap', () => {
    refusedFor(wat(`(module (memory 1) ${RUN})`), 'memory_unbounded', /--maximumMemory/);
    refusedFor(wat(`(module (memory 1 65536) ${RUN})`), 'memory_too_large', /4096 MiB but the manifest requests 16 MiB/);
    refusedFor(wat(`(module (memory 1 16) ${RUN})`), 'memory_too_large', /at most 256 MiB/, { manifestMemoryMb: 512 });
    refusedFor(wat(`(module (memory 1 1) (table 1 funcref) ${RUN})`), 'table_unbounded', /bounded/);
  });

  it('requires the entrypoint and a sane size', () => {
    refusedFor(wat(`(module (memory 1 1) (func (export "main")))`), 'entrypoint_missing', /"run"/);
    refusedFor(wat(`(module (memory 1 1) ${RUN})`), 'module_too_large', /limit/, { maxModuleBytes: 10 });
  });

  it('refuses bytes that are not a core module', () => {
    assert.throws(() => inspectModule(new TextEncoder().encode('#!/bin/sh\nrm -rf /')), /not a WebAssembly module/);
    assert.throws(() => inspectModule(new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0])), /components are not/);
    const truncated = wat(`(module (memory 1 1) ${RUN})`).slice(0, 20);
    assert.throws(() => inspectModule(truncated), SkillPackageError);
  });
});
