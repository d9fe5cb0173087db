// Runs steps of ./setup-steps.ts in a child process (./setup-main.ts) and returns their
// typed answers. One child serves a whole start (it loads the steps' libraries once, in
// parallel with everything else): it lives while a hold is taken or a step is under way,
// then ends; a later step starts a new one.
// Only types are imported from the steps: this module is loaded by the supervisor, which
// must not load what the steps need.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { SetupSteps, StepName } from './setup-steps.ts';

const ENTRY = join(import.meta.dirname, 'setup-main.ts');

export class SetupStepError extends Error {}

interface Pending {
  resolve: (res: unknown) => void;
  reject: (err: Error) => void;
  /** The child asked (an ended child fails only its own requests). */
  child: ChildProcessByStdio<Writable, Readable, Readable>;
}

type Answer = { id: number; ok: true; res: unknown } | { id: number; ok: false; error: string };

export class SetupChild {
  private child: ChildProcessByStdio<Writable, Readable, Readable> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private holds = 0;
  private stderr = '';

  /** The child's environment (TALON_HOME and friends, for steps that find the platform). */
  private readonly env: () => Record<string, string | undefined>;

  constructor(env: () => Record<string, string | undefined>) {
    this.env = env;
  }

  /** Keeps the child between steps until the returned function is called (once). */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.closeIfIdle();
    };
  }

  run<K extends StepName>(step: K, req: SetupSteps[K]['req'], signal?: AbortSignal): Promise<SetupSteps[K]['res']> {
    const child = this.process();
    const id = this.nextId++;
    return new Promise<SetupSteps[K]['res']>((resolve, reject) => {
      // The answer is the one runStep gives for this step (setup-steps.ts types both ends).
      this.pending.set(id, { resolve: (res) => resolve(res as SetupSteps[K]['res']), reject, child });
      signal?.addEventListener('abort', () => {
        if (!this.pending.delete(id)) return;
        child.stdin.write(`${JSON.stringify({ id, cancel: true })}\n`);
        reject(new SetupStepError(`setup step ${step} cancelled`));
        this.closeIfIdle();
      });
      child.stdin.write(`${JSON.stringify({ id, step, req })}\n`);
    });
  }

  /** Lets the child end (its stdin closes; it exits once its steps have answered). */
  private closeIfIdle(): void {
    const child = this.child;
    if (this.holds > 0 || !child || [...this.pending.values()].some((p) => p.child === child)) return;
    child.stdin.end();
    this.child = undefined;
  }

  private process(): ChildProcessByStdio<Writable, Readable, Readable> {
    if (this.child) return this.child;
    const child = spawn(process.execPath, [ENTRY], { env: this.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    child.stdin.on('error', () => undefined);
    createInterface({ input: child.stdout }).on('line', (line) => {
      let a: Answer;
      try {
        a = JSON.parse(line) as Answer;
      } catch {
        return;
      }
      const p = this.pending.get(a.id);
      if (!p) return;
      this.pending.delete(a.id);
      if (a.ok) p.resolve(a.res);
      else p.reject(new SetupStepError(a.error));
      this.closeIfIdle();
    });
    child.on('close', (code, signal) => {
      if (this.child === child) this.child = undefined;
      const tail = this.stderr.trim().split('\n').slice(-5).join(' | ');
      for (const [id, p] of this.pending) {
        if (p.child !== child) continue;
        this.pending.delete(id);
        p.reject(new SetupStepError(`the setup child ended (exit ${code ?? signal}) before answering${tail ? `: ${tail}` : ''}`));
      }
    });
    return child;
  }
}
