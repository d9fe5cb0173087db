// WebSocket frames through egress against a direct connection, in one run: a WebSocket echo
// server in its own process, and frames of 1 KiB text sent straight to it and through egress
// (mutual TLS, the upgrade decided by policy, every outgoing frame scanned, every incoming one
// redacted). Throughput with a window of frames in flight, and the round-trip latency of
// frames sent one at a time.
//   npm run bench:websocket [-- --seconds 5 --window 16 --sequential 2000 --kib 1]
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.ts';
import WebSocket from 'ws';
import { diesWithParent } from '@talon/cli/process';
import { EgressClient } from '@talon/kit/egress';
import { startEgressBench } from './egress-platform.ts';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    window: { type: 'string', default: '16' },
    sequential: { type: 'string', default: '2000' },
    kib: { type: 'string', default: '1' },
  },
});
const SECONDS = Number(values.seconds);
const WINDOW = Number(values.window);
const SEQ = Number(values.sequential);
const FRAME = 'the agent streams a message to the chat platform; '
  .repeat(Math.ceil((Number(values.kib) * 1024) / 52))
  .slice(0, Number(values.kib) * 1024);

/** The echo server, in its own process so it does not share the load generator's event loop. */
const echo = spawn(
  ...diesWithParent(process.execPath, [
    '--input-type=module',
    '-e',
    `import { WebSocketServer } from 'ws'; const s = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false }); s.on('listening', () => console.log(s.address().port)); s.on('connection', (ws) => ws.on('message', (d, b) => ws.send(d, { binary: b })));`,
  ]),
  { stdio: ['ignore', 'pipe', 'inherit'], cwd: join(import.meta.dirname, '..') },
);
const port = await new Promise<number>((r) => echo.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
const target = `ws://127.0.0.1:${port}/`;

const dir = mkdtempSync(join(tmpdir(), 'talon-bench-ws-'));
const { tp } = await startEgressBench({ dir, upstreamPort: port });
const egress = new EgressClient({ proxyUrl: `https://127.0.0.1:${tp.ports.egressProxy}`, tls: tp.platform.tls('orchestrator') });

async function direct(): Promise<WebSocket> {
  const ws = new WebSocket(target, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}
async function viaEgress(): Promise<WebSocket> {
  const ws = await egress.websocket(target);
  ws.resume();
  return ws;
}

/** Frames per second echoed with `WINDOW` in flight, for SECONDS. */
async function throughput(ws: WebSocket): Promise<number> {
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const pump = () => {
      while (inFlight < WINDOW && performance.now() < end) {
        inFlight++;
        ws.send(FRAME);
      }
      if (inFlight === 0) resolve();
    };
    ws.on('message', () => {
      inFlight--;
      done++;
      pump();
    });
    pump();
  });
  ws.removeAllListeners('message');
  return done / ((performance.now() - t0) / 1000);
}

/** Round-trip milliseconds of frames sent one at a time. */
async function latency(ws: WebSocket, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      ws.once('message', () => resolve());
      ws.send(FRAME);
    });
    out.push(performance.now() - t0);
  }
  return out;
}

console.log(
  `bench:websocket on ${machine()}; ${values.kib} KiB text frames, ${SECONDS}s at ${WINDOW} in flight, ${SEQ} sequential round trips`,
);
const rows: Array<Array<string>> = [];
const results: Record<string, number> = {};
for (const [name, open] of [
  ['direct', direct],
  ['talon egress (mTLS, frames scanned and redacted)', viaEgress],
] as const) {
  const ws = await open();
  await latency(ws, 200); // warm-up
  const lat = summarize(await latency(ws, SEQ));
  const fps = await throughput(ws);
  results[name] = fps;
  rows.push([name, fmt(fps, 0), fmt(lat.p50, 3), fmt(lat.p99, 3)]);
  ws.close();
}
console.log(`\n${table(['path', 'frames/s', 'p50 ms', 'p99 ms'], rows)}`);
console.log(
  `\nthrough egress / direct, frames/s: ${fmt(results['talon egress (mTLS, frames scanned and redacted)']! / results.direct!, 2)}x`,
);

await egress.close();
await tp.stop();
echo.kill('SIGTERM');
