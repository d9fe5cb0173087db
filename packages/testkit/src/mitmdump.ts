// Runs Debian's mitmdump (mitmproxy) for interoperability tests and benchmarks.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { diesWithParent } from '@talon/cli/process';
import { freePort } from './ports.ts';

export function mitmdumpAvailable(): boolean {
  return spawnSync('mitmdump', ['--version'], { stdio: 'ignore' }).status === 0;
}

export interface Mitmdump {
  port: number;
  confdir: string;
  output: () => string;
  stop(): Promise<void>;
}

/** Starts mitmdump in regular (forward proxy) mode; its CA lands in confdir/mitmproxy-ca*.pem. */
export async function startMitmdump(confdir: string, extra: string[] = [], opts: { flowDetail?: number } = {}): Promise<Mitmdump> {
  mkdirSync(confdir, { recursive: true });
  const port = await freePort();
  let out = '';
  const [cmd, args] = diesWithParent('mitmdump', [
    '--set',
    `confdir=${confdir}`,
    '--listen-host',
    '127.0.0.1',
    '--listen-port',
    String(port),
    '--set',
    `flow_detail=${opts.flowDetail ?? 1}`,
    ...extra,
  ]);
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!/listening at|Proxy server listening/i.test(out)) {
    if (child.exitCode !== null) throw new Error(`mitmdump exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`mitmdump did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  while (!existsSync(join(confdir, 'mitmproxy-ca.pem'))) await new Promise((r) => setTimeout(r, 50));
  return {
    port,
    confdir,
    output: () => out,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
