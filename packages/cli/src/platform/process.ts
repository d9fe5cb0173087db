// A child process with its output appended to a log file (rotated by size,
// log-file.ts), an exit promise and a bounded stop (SIGTERM, then SIGKILL after
// the grace period).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

/**
 * On Linux, children are started under `setpriv --pdeathsig KILL` so they die
 * with us even when we are killed with SIGKILL (a stuck test runner, an OOM kill)
 * and no exit handler runs.
 */
export const SETPRIV: string | undefined =
  process.platform === 'linux' && spawnSync('setpriv', ['--help'], { stdio: 'ignore' }).status === 0 ? 'setpriv' : undefined;
import { RotatingLogFile, type LogRotation } from './log-file.ts';

/** Command and arguments that make `command` die with this process (when setpriv exists). */
export function diesWithParent(command: string, args: readonly string[]): [string, string[]] {
  return SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, [...args]];
}

export interface ManagedProcessOptions {
  name: string;
  command: string;
  args: readonly string[];
  env: Record<string, string | undefined>;
  cwd?: string;
  logFile: string;
  /** Size limit and rotated files kept; default TALON_LOG_MAX_BYTES / TALON_LOG_FILES. */
  rotation?: LogRotation;
  /** Called with each complete stdout/stderr line (the log file gets them too). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  /**
   * Settles once the process has exited and all of its output is in the log file:
   * output can still arrive after the exit event, so read the log after this.
   */
  readonly logged: Promise<void>;
  /** Set before an intentional stop so crash handlers ignore the exit. */
  expectedExit = false;
  private readonly log: RotatingLogFile;
  private exitInfo: ExitInfo | undefined;

  constructor(opts: ManagedProcessOptions) {
    this.name = opts.name;
    this.log = new RotatingLogFile(opts.logFile, opts.rotation);
    const [command, args] = diesWithParent(opts.command, opts.args);
    this.child = spawn(command, args, {
      env: opts.env as NodeJS.ProcessEnv,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: a Ctrl-C in the terminal reaches `talon up` only,
      // which then stops the children in order.
      detached: true,
    });
    for (const [stream, src] of [
      ['stdout', this.child.stdout],
      ['stderr', this.child.stderr],
    ] as const) {
      let buf = '';
      src?.on('data', (chunk: Buffer) => {
        this.log.write(chunk);
        if (!opts.onLine) return;
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          opts.onLine(buf.slice(0, nl), stream);
          buf = buf.slice(nl + 1);
        }
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      this.child.on('error', (err) => {
        this.log.write(`spawn error: ${err.message}\n`);
        this.exitInfo = { code: 127, signal: null };
        resolve(this.exitInfo);
      });
    });
    const closed = new Promise<void>((resolve) => {
      this.child.once('close', () => resolve());
      this.child.once('error', () => resolve());
    });
    const log = this.log;
    this.logged = Promise.all([this.exited, closed]).then(() => log.close());
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, wait up to graceMs, then SIGKILL. Resolves when the process is gone. */
  async stop(graceMs = 10_000): Promise<ExitInfo> {
    this.expectedExit = true;
    if (!this.running) return this.exitInfo!;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
