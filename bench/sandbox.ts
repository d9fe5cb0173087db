// Sandbox benchmark: what running a skill through NATS and a sandbox node costs over
// calling the same Extism function in-process, cold loads, throughput with one and two
// nodes, the first call from a node whose plugin hosts were retired (host start
// included) and memory with and without hosts. Prints figures; it is not a test.
//
//   node_modules/.bin/node bench/sandbox.ts [--calls 2000] [--seconds 5]
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { benchArgs } from './args.ts';
import createPlugin from '@extism/extism';
import wabtInit from 'wabt';
import type { NatsConnection } from '@talon/kit/nats';
import { SkillInvocation, SkillResult } from '@talon/proto';
import type { TestPlatform } from '@talon/testkit';
import { builtSkill, installApproved, startSandboxPlatform } from '../services/sandbox/test/support.ts';

const { values: args } = benchArgs({ options: { calls: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '5' } } });
const CALLS = Number(args.calls);
const SECONDS = Number(args.seconds);
const INPUT = JSON.stringify({ value: 5, from: 'mi', to: 'km' });

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))]!;
}
const us = (ms: number) => `${Math.round(ms * 1000)} µs`;
const line = (label: string, xs: number[]) =>
  console.log(`  ${label.padEnd(44)} p50 ${us(pct(xs, 0.5)).padStart(9)}   p99 ${us(pct(xs, 0.99)).padStart(9)}`);

async function inProcess(): Promise<{ warm: number[]; fresh: number[] }> {
  const wasm = readFileSync(join(builtSkill('examples', 'unit-convert'), 'skill.wasm'));
  const module = await WebAssembly.compile(wasm);
  const make = () => createPlugin({ wasm: [{ module }] }, { useWasi: false });
  const warmPlugin = await make();
  const warm: number[] = [];
  const fresh: number[] = [];
  for (let i = 0; i < 200; i++) await (await make()).call('run', INPUT);
  // The stub-free runtime keeps state across calls; reuse is fine for a pure function.
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    await warmPlugin.call('run', INPUT);
    warm.push(performance.now() - t);
  }
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    await (await make()).call('run', INPUT);
    fresh.push(performance.now() - t);
  }
  return { warm, fresh };
}

function request(nc: NatsConnection, skill: string, input = INPUT): Promise<SkillResult> {
  const inv: SkillInvocation = {
    invocationId: 'b',
    skill,
    version: '',
    inputJson: input,
    deadlineMs: 0,
    userId: 'bench',
    userApproved: false,
  };
  return nc
    .request(`talon.skill.invoke.${skill}`, SkillInvocation.encode(inv).finish(), { timeout: 30_000 })
    .then((m) => SkillResult.decode(m.data));
}

async function throughput(nc: NatsConnection, inFlight: number): Promise<number> {
  let done = 0;
  let failed = 0;
  const until = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < until) {
        const r = await request(nc, 'unit-convert');
        if (r.error) failed += 1;
        else done += 1;
      }
    }),
  );
  if (failed > 0) console.log(`  (${failed} calls failed: busy/timeout)`);
  return done / SECONDS;
}

const children = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
const ownRssKb = (p: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);

function rssKb(pid: number): number {
  let total = ownRssKb(pid);
  for (const c of children(pid)) total += ownRssKb(c);
  return total;
}

/** Plugin hosts of a node: its children running child.ts. */
const pluginHosts = (pid: number): number =>
  children(pid).filter((c) => {
    try {
      return readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('child.ts');
    } catch {
      return false;
    }
  }).length;

async function untilHosts(pid: number, n: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (pluginHosts(pid) !== n) {
    if (Date.now() > deadline) throw new Error(`the node did not reach ${n} plugin hosts`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

const median = (xs: number[]) => pct(xs, 0.5);

async function onePageModule(dataBytes: number): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const data = Buffer.alloc(dataBytes, 0x5a);
  const wat = `(module
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $store (param i64 i32)))
    (import "extism:host/env" "output_set" (func $out (param i64 i64)))
    (memory (export "memory") ${Math.ceil((dataBytes + 65536) / 65536)} ${Math.ceil((dataBytes + 65536) / 65536)})
    (data (i32.const 1024) "${data.toString('latin1')}")
    (func (export "run") (result i32) (local $p i64)
      (local.set $p (call $alloc (i64.const 2)))
      (call $store (local.get $p) (i32.const 111)) (call $store (i64.add (local.get $p) (i64.const 1)) (i32.const 107))
      (call $out (local.get $p) (i64.const 2)) (i32.const 0)))`;
  const m = wabt.parseWat('big.wat', wat);
  try {
    return m.toBinary({}).buffer;
  } finally {
    m.destroy();
  }
}

async function main(): Promise<void> {
  console.log(`sandbox benchmark (${CALLS} sequential calls per figure, ${SECONDS} s per throughput run)`);
  const base = await inProcess();
  console.log('\nIn-process Extism (same unit-convert plugin, foreground, no isolation):');
  line('warm instance, call only', base.warm);
  line('fresh instance per call (as the sandbox does)', base.fresh);

  let tp: TestPlatform | undefined;
  let second: ChildProcess | undefined;
  try {
    tp = await startSandboxPlatform({ services: [], env: { TALON_LOG_LEVEL: 'warn' } });
    const nc = await tp.admin();
    await installApproved(nc, builtSkill('examples', 'unit-convert'));
    for (let i = 0; i < 300; i++) await request(nc, 'unit-convert');
    const viaNats: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      const r = await request(nc, 'unit-convert');
      viaNats.push(performance.now() - t);
      if (r.error) throw new Error(JSON.stringify(r.error));
    }
    // The transport alone: the same request/reply to an echo responder in another process.
    const echo = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { connectNats } from '@talon/kit/nats';
         import { createLogger } from '@talon/kit/log';
         const nc = await connectNats({ servers: ${JSON.stringify(tp.platform.natsUrl)}, user: 'admin', seedFile: ${JSON.stringify(join(tp.home, 'nats', 'admin.nk'))}, log: createLogger({ service: 'echo', level: 'silent' }) });
         nc.subscribe('bench.echo', { callback: (_e, m) => m.respond(m.data) });
         await nc.flush(); console.log('ready');`,
      ],
      { cwd: join(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((res) => echo.stdout!.once('data', () => res()));
    const payload = SkillInvocation.encode({
      invocationId: 'b',
      skill: 'unit-convert',
      version: '',
      inputJson: INPUT,
      deadlineMs: 0,
      userId: 'bench',
      userApproved: false,
    }).finish();
    for (let i = 0; i < 300; i++) await nc.request('bench.echo', payload);
    const transport: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t0 = performance.now();
      await nc.request('bench.echo', payload);
      transport.push(performance.now() - t0);
    }
    echo.kill();
    console.log('\nThrough NATS request/reply and a sandbox node (plugin hosts: child processes started on demand):');
    line('NATS request/reply to an echo process', transport);
    line('invocation round trip', viaNats);
    console.log(
      `  added over in-process fresh instance:        p50 ${us(pct(viaNats, 0.5) - pct(base.fresh, 0.5)).padStart(9)}   p99 ${us(pct(viaNats, 0.99) - pct(base.fresh, 0.99)).padStart(9)}`,
    );
    console.log(
      `  added over in-process warm call:             p50 ${us(pct(viaNats, 0.5) - pct(base.warm, 0.5)).padStart(9)}   p99 ${us(pct(viaNats, 0.99) - pct(base.warm, 0.99)).padStart(9)}`,
    );

    // Cold load of a 1 MiB plugin: registry read, object store fetch, hash + signature +
    // policy checks, transfer to a plugin host, compile, instantiate, call.
    const big = await onePageModule(1024 * 1024);
    const buildDir = builtSkill('examples', 'unit-convert');
    await installApproved(nc, buildDir, { name: 'big', inputSchema: { type: 'object' }, permissions: { memoryMb: 2 } }, { wasm: big });
    let t = performance.now();
    let r = await request(nc, 'big', '{}');
    const cold = performance.now() - t;
    if (r.error) throw new Error(JSON.stringify(r.error));
    const warmBig: number[] = [];
    for (let i = 0; i < 50; i++) {
      t = performance.now();
      await request(nc, 'big', '{}');
      warmBig.push(performance.now() - t);
    }
    // Cold again on a restarted node whose caches are empty, then with only the disk cache.
    await tp.platform.stopService('sandbox');
    rmSync(join(tp.home, 'sandbox', 'cache'), { recursive: true, force: true });
    tp.platform.startService('sandbox');
    await tp.platform.waitHealthy(['sandbox']);
    t = performance.now();
    r = await request(nc, 'big', '{}');
    const coldFresh = performance.now() - t;
    await tp.platform.stopService('sandbox');
    tp.platform.startService('sandbox');
    await tp.platform.waitHealthy(['sandbox']);
    t = performance.now();
    r = await request(nc, 'big', '{}');
    const coldDisk = performance.now() - t;
    console.log(`\nCold load of a ${(big.length / 1048576).toFixed(2)} MiB plugin (first call):`);
    console.log(`  running node, not yet fetched:               ${cold.toFixed(1)} ms`);
    console.log(`  restarted node, empty caches, host start:   ${coldFresh.toFixed(1)} ms`);
    console.log(`  restarted node, disk cache, host start:     ${coldDisk.toFixed(1)} ms`);
    console.log(`  warm calls of the same plugin:               p50 ${pct(warmBig, 0.5).toFixed(2)} ms`);

    console.log('\nThroughput (unit-convert, 32 calls in flight, on this 2-core machine):');
    const one = await throughput(nc, 32);
    console.log(`  1 node:  ${one.toFixed(0)} invocations/s`);
    const env = {
      ...tp.platform.serviceEnv('sandbox'),
      SANDBOX_GRPC_PORT: '0',
      SANDBOX_INTERNAL_PORT: '0',
      TALON_PORTS_FILE: '', // the platform's node reports its ports there; this one reports none
      SANDBOX_CACHE_DIR: join(tp.home, 'sandbox', 'cache-2'),
      TALON_LOG_LEVEL: 'info',
    };
    second = spawn(process.execPath, [join(import.meta.dirname, '..', 'services', 'sandbox', 'src', 'main.ts')], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((res, rej) => {
      second!.stdout!.on('data', (d: Buffer) => d.toString().includes('sandbox ready') && res());
      second!.once('exit', (code) => rej(new Error(`the second sandbox node exited (${code})`)));
    });
    for (let i = 0; i < 100; i++) await request(nc, 'unit-convert');
    const two = await throughput(nc, 32);
    console.log(`  2 nodes: ${two.toFixed(0)} invocations/s (both nodes share the same 2 cores)`);
    second.kill('SIGTERM');

    // Hosts are retired after SANDBOX_HOST_IDLE_MS without work: shortened here so that each
    // cold sample waits 0.3 s, not a minute. The node keeps its verified module in memory,
    // so a cold call pays the host start (process, Extism, compile) and nothing else.
    Object.assign(tp.platform.opts.env!, { SANDBOX_HOST_IDLE_MS: '300' });
    await tp.platform.stopService('sandbox');
    tp.platform.startService('sandbox');
    await tp.platform.waitHealthy(['sandbox']);
    const pid = tp.platform.process('sandbox')!.pid!;
    const readyHosts = pluginHosts(pid);
    await request(nc, 'unit-convert'); // the node reads and verifies the skill once
    const coldCalls: number[] = [];
    const warmCalls: number[] = [];
    let rssOneHost = 0;
    let rssIdle = 0;
    for (let i = 0; i < 9; i++) {
      await untilHosts(pid, 0);
      rssIdle = rssKb(pid);
      t = performance.now();
      r = await request(nc, 'unit-convert');
      coldCalls.push(performance.now() - t);
      if (r.error) throw new Error(JSON.stringify(r.error));
      for (let j = 0; j < 9; j++) {
        t = performance.now();
        await request(nc, 'unit-convert');
        warmCalls.push(performance.now() - t);
      }
      rssOneHost = rssKb(pid);
    }
    console.log('\nFirst call after the node went idle (SANDBOX_HOST_IDLE_MS=300; 9 cold samples, 81 warm):');
    console.log(`  plugin hosts when the node is ready:         ${readyHosts}`);
    const range = (xs: number[], d: number) => `(${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
    console.log(`  first call from a cold node (host start included): median ${median(coldCalls).toFixed(1)} ms ${range(coldCalls, 1)}`);
    console.log(`  warm call:                                   median ${median(warmCalls).toFixed(2)} ms ${range(warmCalls, 2)}`);
    console.log(
      `\nRSS per node: idle, hosts retired ${(rssIdle / 1024).toFixed(0)} MiB; with one plugin host ${(rssOneHost / 1024).toFixed(0)} MiB`,
    );
  } finally {
    second?.kill('SIGTERM');
    await tp?.stop();
  }
}

await main();
