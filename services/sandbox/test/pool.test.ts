// The plugin host pool against real hostile modules from the corpus: every limit is
// hit for real, and after each one the pool still answers other calls.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import wabtInit from 'wabt';
import { createLogger } from '@talon/kit/log';
import { HostPool, type HostJob } from '../src/host/pool.ts';
import { sha256Hex } from '@talon/records/skills';
import { builtSkill, ensureSkillsBuilt } from './support.ts';

const log = createLogger({ service: 'pool-test', level: 'silent' });

function job(group: 'examples' | 'malicious', name: string, over: Partial<HostJob> = {}, input = '{}'): HostJob {
  const dir = builtSkill(group, name);
  const wasm = new Uint8Array(readFileSync(join(dir, 'skill.wasm')));
  const manifest = JSON.parse(readFileSync(join(dir, 'skill.json'), 'utf8')) as { inputSchema: unknown; permissions: { memoryMb: number } };
  return {
    skillKey: `${name}@1.0.0`,
    sha256: sha256Hex(wasm),
    wasm,
    entrypoint: 'run',
    input,
    inputSchema: JSON.stringify(manifest.inputSchema),
    maxPages: manifest.permissions.memoryMb * 16,
    limits: { maxAllocBytes: manifest.permissions.memoryMb * 1048576, maxOutputBytes: 1048576, maxVarBytes: 1048576, maxLogLines: 5 },
    deadline: Date.now() + 1000,
    onHostCall: async () => ({ result: '{"error":{"code":"host_not_allowed","message":"no"}}' }),
    ...over,
  };
}

const convert = (deadlineMs = 5000) =>
  job('examples', 'unit-convert', { deadline: Date.now() + deadlineMs }, '{"value":1,"from":"km","to":"m"}');

/** Polls a condition of the pool until it holds (a replaced host takes a while to start on a busy machine). */
async function until(cond: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`${what} (waited ${timeoutMs} ms)`);
    await sleep(20);
  }
}

describe('plugin host pool', () => {
  let pool: HostPool;
  before(async () => {
    await ensureSkillsBuilt();
    pool = new HostPool({ size: 2, perSkill: 1, queueLimit: 4, heapMb: 96, rssLimitBytes: 400 * 1048576, warmTimeoutMs: 2000, log });
    await pool.start();
  });
  after(async () => {
    await pool?.close();
  });

  it('runs a call and returns its output', async () => {
    const r = await pool.run(convert());
    assert.equal(r.ok, true, JSON.stringify(r.error));
    assert.equal(Buffer.from(r.output!).toString(), '{"value":1000,"unit":"m"}');
  });

  it('kills an infinite loop at its deadline, replaces the host, and serves others meanwhile', async () => {
    await until(() => pool.idleHosts() === 2, 'both hosts idle');
    const pids = pool.pids();
    const t0 = Date.now();
    const loop = pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 2000 }));
    let loopDone = false;
    void loop.then(() => (loopDone = true));
    // While the loop holds one host, the other keeps answering.
    const mid = await pool.run(convert());
    assert.equal(mid.ok, true);
    assert.equal(loopDone, false, 'another skill was served while the loop ran');
    const r = await loop;
    const took = Date.now() - t0;
    assert.equal(r.error?.code, 'timeout');
    assert.ok(r.hostReplaced);
    assert.ok(took >= 1990 && took < 5000, `stopped at the deadline (${took} ms)`);
    await until(() => pool.size === 2 && pool.pids().some((p) => !pids.includes(p)), 'a replacement host was started');
    assert.equal((await pool.run(convert())).ok, true);
  });

  it('contains memory.grow bombs at the declared maximum, without killing the host', async () => {
    const r = await pool.run(job('malicious', 'memory-bomb', { deadline: Date.now() + 5000 }));
    assert.equal(r.error?.code, 'memory_limit', JSON.stringify(r.error));
    assert.match(r.error!.message, /16 MiB/);
    assert.equal(r.hostReplaced, false);
    assert.equal((await pool.run(convert())).ok, true);
  });

  it('caps host-side (Extism kernel) allocations', async () => {
    const r = await pool.run(job('malicious', 'alloc-bomb', { deadline: Date.now() + 5000 }));
    assert.equal(r.error?.code, 'memory_limit', JSON.stringify(r.error));
    assert.equal((await pool.run(convert())).ok, true);
  });

  it('refuses outputs above the cap, and turns traps and stack overflows into errors', async () => {
    assert.equal((await pool.run(job('malicious', 'huge-output', { deadline: Date.now() + 5000 }))).error?.code, 'output_too_large');
    const trap = await pool.run(job('malicious', 'trap'));
    assert.equal(trap.error?.code, 'trap');
    assert.match(trap.error!.message, /unreachable/);
    const rec = await pool.run(job('malicious', 'deep-recursion', { deadline: Date.now() + 5000 }));
    assert.equal(rec.error?.code, 'trap');
    assert.match(rec.error!.message, /stack overflow/);
    assert.equal((await pool.run(convert())).ok, true);
  });

  it('stops a module that loops while being instantiated', async () => {
    const r = await pool.run(job('malicious', 'start-loop', { deadline: Date.now() + 600 }));
    assert.equal(r.error?.code, 'timeout');
    assert.equal((await pool.run(convert())).ok, true);
  });

  it('validates input against the schema inside the host', async () => {
    const r = await pool.run(job('examples', 'unit-convert', { deadline: Date.now() + 5000 }, '{"value":"1","from":"km"}'));
    assert.equal(r.error?.code, 'invalid_argument');
    assert.match(r.error!.message, /\/value: expected number/);
  });

  it('gives one skill at most its share of hosts and refuses work beyond the queue', async () => {
    // Both hosts free, so "a host is idle" below is a fact, not a hope.
    await until(() => pool.idleHosts() === 2, 'both hosts idle');
    // perSkill = 1: a second loop waits although a host is idle; another skill does not.
    const a = pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 900 }));
    const b = pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 500 }));
    const c = await pool.run(convert());
    assert.equal(c.ok, true);
    // Starved, it would have queued behind the waiting loop until that gave up (500 ms).
    assert.ok(c.queuedMs < 250, `the other skill was not starved (queued ${c.queuedMs} ms)`);
    const rb = await b;
    assert.equal(rb.error?.code, 'timeout');
    assert.match(rb.error!.message, /before a plugin host became free/);
    await a;
    await until(() => pool.idleHosts() === 2, 'the killed host replaced');
    const flood = Array.from({ length: 8 }, () => pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 300 })));
    const codes = (await Promise.all(flood)).map((r) => r.error?.code);
    assert.ok(codes.includes('busy'), `queue limit enforced: ${codes.join(',')}`);
    assert.equal((await pool.run(convert(30_000))).ok, true);
  });
});

describe('plugin host memory ceiling', () => {
  it('kills a host whose resident memory passes the ceiling and replaces it', async () => {
    await ensureSkillsBuilt();
    const wabt = await wabtInit();
    // 256 MiB declared maximum: within its own limit, above this pool's 120 MiB ceiling.
    const m = wabt.parseWat(
      'big.wat',
      `(module (memory (export "memory") 1 4096)
        (func (export "run") (result i32) (local $p i32) (local $a i32)
          (loop $g (local.set $p (memory.grow (i32.const 64)))
            (if (i32.eq (local.get $p) (i32.const -1)) (then unreachable))
            (local.set $a (i32.mul (local.get $p) (i32.const 65536)))
            (block $d (loop $t (br_if $d (i32.ge_u (local.get $a) (i32.mul (i32.add (local.get $p) (i32.const 64)) (i32.const 65536))))
              (i32.store (local.get $a) (i32.const 1)) (local.set $a (i32.add (local.get $a) (i32.const 4096))) (br $t)))
            (br $g)) (i32.const 0)))`,
    );
    const wasm = m.toBinary({}).buffer;
    m.destroy();
    const pool = new HostPool({ size: 1, perSkill: 1, queueLimit: 2, heapMb: 64, rssLimitBytes: 120 * 1048576, warmTimeoutMs: 2000, log });
    await pool.start();
    try {
      const r = await pool.run({
        ...job('malicious', 'memory-bomb'),
        sha256: sha256Hex(wasm),
        wasm,
        maxPages: 4096,
        deadline: Date.now() + 10_000,
      });
      assert.equal(r.error?.code, 'memory_limit', JSON.stringify(r.error));
      assert.ok(r.hostReplaced, 'the host was killed by the ceiling, not by the module limit');
      await until(() => pool.idleHosts() === 1, 'the killed host replaced');
      assert.equal((await pool.run(convert())).ok, true);
    } finally {
      await pool.close();
    }
  });
});

describe('orphaned plugin hosts', () => {
  it('exit when their node is killed with SIGKILL mid-call', async () => {
    await ensureSkillsBuilt();
    const script = `
      import { readFileSync } from 'node:fs';
      import { createLogger } from '@talon/kit/log';
      import { HostPool } from './services/sandbox/src/host/pool.ts';
      const pool = new HostPool({ size: 1, perSkill: 1, queueLimit: 1, heapMb: 64, rssLimitBytes: 1 << 30, warmTimeoutMs: 1000, log: createLogger({ service: 'x', level: 'silent' }) });
      await pool.start();
      const wasm = new Uint8Array(readFileSync(${JSON.stringify(join(builtSkill('malicious', 'infinite-loop'), 'skill.wasm'))}));
      void pool.run({ skillKey: 'l@1', sha256: 'x', wasm, entrypoint: 'run', input: '{}', inputSchema: '{"type":"object"}', maxPages: 1,
        limits: { maxAllocBytes: 1 << 20, maxOutputBytes: 1 << 20, maxVarBytes: 1 << 20, maxLogLines: 1 }, deadline: Date.now() + 600000, onHostCall: async () => ({}) });
      setTimeout(() => console.log(JSON.stringify(pool.pids())), 500);
    `;
    const node = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '..', '..', '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pids = await new Promise<number[]>((resolve) =>
      node.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as number[])),
    );
    assert.equal(pids.length, 1);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(alive(pids[0]!), 'the host is spinning');
    node.kill('SIGKILL');
    // The watchdog looks once a second; a loaded machine may take a few more to schedule it.
    const deadline = Date.now() + 10_000;
    while (alive(pids[0]!) && Date.now() < deadline) await sleep(100);
    assert.equal(alive(pids[0]!), false, 'the orphaned host killed itself');
  });
});
