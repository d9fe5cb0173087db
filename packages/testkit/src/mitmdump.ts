// Runs Debian's mitmdump (mitmproxy) for interoperability tests and benchmarks.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { diesWithParent } from '@talon/cli/process';

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
  let out = '';
  const [cmd, args] = diesWithParent('mitmdump', [
    '--set',
    `confdir=${confdir}`,
    '--listen-host',
    '127.0.0.1',
    // Any free port: mitmdump prints the one it bound (no port is picked here and bound later).
    '--listen-port',
    '0',
    '--set',
    `flow_detail=${opts.flowDetail ?? 1}`,
    ...extra,
  ]);
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 20_000;
  let port: number | undefined;
  // "Proxy server listening at 127.0.0.1:PORT" (or http://127.0.0.1:PORT); the CA is written before it.
  while (port === undefined) {
    const m = /listening at \S*?:(\d+)/i.exec(out);
    if (m) port = Number(m[1]);
    else {
      if (child.exitCode !== null) throw new Error(`mitmdump exited: ${out}`);
      if (Date.now() > deadline) throw new Error(`mitmdump did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  while (!existsSync(join(confdir, 'mitmproxy-ca.pem'))) {
    if (Date.now() > deadline) throw new Error(`mitmdump wrote no CA in ${confdir}: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
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
