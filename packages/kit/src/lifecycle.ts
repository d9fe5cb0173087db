// Ordered, time-boxed graceful shutdown.
// Steps run in registration order (health NOT_SERVING -> stop intake -> finish
// in-flight -> drain NATS -> close pools -> flush telemetry); each gets a time
// box, and the whole sequence is bounded so a stuck dependency cannot hang exit.
import type { Logger } from './log.ts';

export interface ShutdownStep {
  name: string;
  run: () => Promise<void> | void;
  timeoutMs?: number;
}

export class Lifecycle {
  private readonly steps: ShutdownStep[] = [];
  private stopping: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly totalMs: number;

  constructor(log: Logger, totalMs = 15_000) {
    this.log = log;
    this.totalMs = totalMs;
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /** Adds a step; steps run in the order they were added. */
  onShutdown(step: ShutdownStep): void {
    this.steps.push(step);
  }

  /** Runs every step once; later calls return the same promise. */
  shutdown(reason: string): Promise<void> {
    this.stopping ??= this.runSteps(reason);
    return this.stopping;
  }

  private async runSteps(reason: string): Promise<void> {
    const started = Date.now();
    this.log.info({ reason }, 'shutting down');
    for (const step of this.steps) {
      const left = this.totalMs - (Date.now() - started);
      const box = Math.max(100, Math.min(step.timeoutMs ?? 5000, left));
      const t0 = Date.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(step.run),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${box} ms`)), box);
          }),
        ]);
        this.log.debug({ step: step.name, ms: Date.now() - t0 }, 'shutdown step done');
      } catch (err) {
        this.log.warn({ step: step.name, err }, 'shutdown step failed; continuing');
      } finally {
        if (timer) clearTimeout(timer);
      }
    }
    this.log.info({ ms: Date.now() - started }, 'stopped');
  }

  /** Installs SIGTERM/SIGINT handlers; a second signal exits immediately. */
  installSignalHandlers(exit: (code: number) => void = (c) => process.exit(c)): void {
    let signals = 0;
    const handler = (sig: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        this.log.warn({ signal: sig }, 'second signal: exiting now');
        exit(130);
        return;
      }
      this.shutdown(sig).then(
        () => exit(0),
        () => exit(1),
      );
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  }
}

/** Tracks in-flight work so shutdown can wait for it. */
export class InFlight {
  private count = 0;
  private waiters: Array<() => void> = [];

  get size(): number {
    return this.count;
  }

  async track<T>(fn: () => Promise<T>): Promise<T> {
    this.count += 1;
    try {
      return await fn();
    } finally {
      this.count -= 1;
      if (this.count === 0) for (const w of this.waiters.splice(0)) w();
    }
  }

  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}
