// The plugin host pool against real hostile modules from the corpus: every limit is
// hit for real, and after each one the pool still answers other calls. And its life
// cycle: no host at rest, hosts started by calls up to the pool size, retired when idle.
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

const convert = (deadlineMs = 5000, skillKey = 'unit-convert@1.0.0') =>
  job('examples', 'unit-convert', { deadline: Date.now() + deadlineMs, skillKey }, '{"value":1,"from":"km","to":"m"}');

/** Starts `n` hosts: `n` concurrent calls under distinct skill keys, so no per-skill share holds them back. */
async function warmUp(pool: HostPool, n: number): Promise<void> {
  const rs = await Promise.all(Array.from({ length: n }, (_, i) => pool.run(convert(30_000, `warm-${i}@1.0.0`))));
  for (const r of rs) assert.equal(r.ok, true, JSON.stringify(r.error));
  await until(() => pool.idleHosts() === n, `${n} hosts idle`);
}

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
    assert.equal(pool.size, 0, 'no host before the first call');
    const r = await pool.run(convert(30_000));
    assert.equal(r.ok, true, JSON.stringify(r.error));
    assert.equal(Buffer.from(r.output!).toString(), '{"value":1000,"unit":"m"}');
  });

  it('kills an infinite loop at its deadline, serves others meanwhile, and starts a host again only for work', async () => {
    await warmUp(pool, 2);
    const pids = pool.pids();
    const started = pool.counters.started;
    const killed = pool.counters.killed;
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
    // Nothing waits, so the killed host is not replaced (a replacement would keep the size at 2).
    await until(() => pool.counters.killed === killed + 1 && pool.size === 1, 'the killed host gone');
    assert.equal(pool.counters.started, started, 'no replacement started without work');
    assert.equal(pool.counters.crashed, 0);
    assert.ok(pids.includes(pool.pids()[0]!), 'the surviving host is one of the two');
    // Two calls at once need the second host again: it is started then.
    const [a, b] = await Promise.all([pool.run(convert(30_000, 'a@1')), pool.run(convert(30_000, 'b@1'))]);
    assert.equal(a.ok && b.ok, true);
    assert.equal(pool.counters.started, started + 1);
  });

  it("counts a call's run time from the moment a host takes it: time waiting for one is bounded by the deadline alone", async () => {
    // perSkill = 1: the second loop waits for the first to be stopped, then gets its own 800 ms.
    const t0 = Date.now();
    const loop = (over: Partial<HostJob>) =>
      pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 20_000, runMs: 800, ...over }));
    const [a, b] = await Promise.all([loop({}), loop({})]);
    const took = Date.now() - t0;
    for (const r of [a, b]) {
      assert.equal(r.error?.code, 'timeout');
      assert.match(r.error!.message, /did not finish before its deadline/, 'stopped while running, not while waiting');
    }
    assert.ok(b.queuedMs >= 790, `the second waited for the first (${b.queuedMs} ms)`);
    assert.ok(took >= 1590 && took < 15_000, `each ran its 800 ms, neither the 20 s deadline (${took} ms)`);
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
    // Both hosts started and free, so "a host is idle" below is a fact, not a hope.
    await warmUp(pool, 2);
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
    const flood = Array.from({ length: 8 }, () => pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 300 })));
    const codes = (await Promise.all(flood)).map((r) => r.error?.code);
    assert.ok(codes.includes('busy'), `queue limit enforced: ${codes.join(',')}`);
    assert.equal((await pool.run(convert(30_000))).ok, true);
  });
});

/** Two hosts that retire after 300 ms idle (the life-cycle tests). */
function lifecyclePool(extra: Partial<ConstructorParameters<typeof HostPool>[0]> = {}): HostPool {
  return new HostPool({
    size: 2,
    perSkill: 2,
    queueLimit: 8,
    heapMb: 96,
    rssLimitBytes: 400 * 1048576,
    warmTimeoutMs: 2000,
    idleMs: 300,
    log,
    ...extra,
  });
}

describe('plugin host life cycle', () => {
  before(ensureSkillsBuilt);

  it('runs no host at rest, starts one per call that needs it up to the size, and retires idle ones', async () => {
    const pool = lifecyclePool();
    try {
      await pool.start();
      assert.equal(pool.size, 0, 'a node at rest has no plugin host');
      const first = await pool.run(convert(30_000));
      assert.equal(first.ok, true, JSON.stringify(first.error));
      assert.equal(pool.counters.started, 1);
      await until(() => pool.size === 0, 'the idle host retired');
      assert.deepEqual(
        { retired: pool.counters.retired, killed: pool.counters.killed, crashed: pool.counters.crashed },
        { retired: 1, killed: 0, crashed: 0 },
        'retiring is not a failure',
      );

      // Five calls at once: two hosts start (the size), the other calls wait for them.
      const calls = Array.from({ length: 5 }, (_, i) => pool.run(convert(30_000, `c${i}@1`)));
      assert.equal(pool.size, 2, 'hosts started for the waiting calls, no more than the size');
      const rs = await Promise.all(calls);
      assert.ok(
        rs.every((r) => r.ok),
        JSON.stringify(rs.map((r) => r.error)),
      );
      assert.equal(pool.counters.started, 3, 'two more hosts, no more');
      await until(() => pool.size === 0, 'both hosts retired');

      // A host killed at its deadline is not replaced while nothing waits.
      const loop = await pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 1500 }));
      assert.equal(loop.error?.code, 'timeout');
      assert.ok(loop.hostReplaced);
      await until(() => pool.counters.killed === 1 && pool.size === 0, 'the killed host gone');
      assert.equal(pool.counters.started, 4, 'no replacement without work');
      assert.equal((await pool.run(convert(30_000))).ok, true, 'the next call starts a host');
      assert.equal(pool.counters.started, 5);
      await until(() => pool.size === 0, 'that host retired too');
      assert.equal(pool.counters.crashed, 0);
    } finally {
      await pool.close();
    }
  });

  it('keeps a warm minimum: started before start() returns, never retired, replaced after a kill', async () => {
    const pool = lifecyclePool({ minIdle: 1 });
    try {
      await pool.start();
      assert.equal(pool.idleHosts(), 1, 'the warm host is ready when start() returns');
      // Two calls at once: the warm host takes one, a second host is started for the other.
      const rs = await Promise.all([pool.run(convert(30_000, 'a@1')), pool.run(convert(30_000, 'b@1'))]);
      assert.ok(
        rs.every((r) => r.ok),
        JSON.stringify(rs.map((r) => r.error)),
      );
      assert.equal(pool.counters.started, 2);
      await until(() => pool.counters.retired === 1 && pool.size === 1, 'the host above the minimum retired');
      const loop = await pool.run(job('malicious', 'infinite-loop', { deadline: Date.now() + 1500 }));
      assert.equal(loop.error?.code, 'timeout');
      await until(() => pool.counters.killed === 1 && pool.idleHosts() === 1, 'the minimum restored after the kill');
      assert.equal(pool.counters.retired, 1, 'the minimum is not retired');
      assert.equal(pool.counters.crashed, 0);
    } finally {
      await pool.close();
    }
  });
});

describe('plugin host memory ceiling', () => {
  it('kills a host whose resident memory passes the ceiling; the next call gets a fresh one', async () => {
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
      await until(() => pool.size === 0 && pool.counters.killed === 1, 'the killed host gone');
      assert.equal((await pool.run(convert(30_000))).ok, true, 'the next call starts a fresh host');
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
      const pool = new HostPool({ size: 1, minIdle: 1, perSkill: 1, queueLimit: 1, heapMb: 64, rssLimitBytes: 1 << 30, warmTimeoutMs: 1000, log: createLogger({ service: 'x', level: 'silent' }) });
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
