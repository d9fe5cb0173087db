// TALON_HOME/run/platform.json: the ports a running platform got, for the CLI.
// Written whole (temporary name, then rename) once the platform is healthy, removed
// when it stops; one left behind by a supervisor that was killed is recognised by its
// pid and reported as stale rather than trusted.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRunInfo, serializeRunInfo, type RunInfo, type RunState } from './endpoints.ts';

export const RUN_FILE = 'platform.json';

/** The run file of the platform whose state is in `home` (TALON_HOME, resolved). */
export function runFilePath(home: string): string {
  return join(home, 'run', RUN_FILE);
}

/** True while process `pid` exists (one of another user's counts: it is not ours to judge). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function writeRunFile(home: string, info: RunInfo): void {
  const file = runFilePath(home);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, serializeRunInfo(info), { mode: 0o600 });
  renameSync(tmp, file);
}

export function readRunState(home: string, alive: (pid: number) => boolean = processAlive): RunState {
  let text: string;
  try {
    text = readFileSync(runFilePath(home), 'utf8');
  } catch {
    return { kind: 'absent' };
  }
  const info = parseRunInfo(text);
  if (!info) return { kind: 'absent' };
  return alive(info.pid) ? { kind: 'running', info } : { kind: 'stale', pid: info.pid };
}

/** Removes the run file if process `pid` wrote it (never another supervisor's). */
export function removeRunFile(home: string, pid = process.pid): void {
  const st = readRunState(home, () => true);
  if (st.kind === 'running' && st.info.pid === pid) rmSync(runFilePath(home), { force: true });
}
