// How `talon up` restarts a process that exited unexpectedly: pure, tested on its own.

/** A process that ran this long before it exited counts as healthy: its backoff starts over. */
export const STABLE_RUN_MS = 60_000;

/** The longest wait before a restart. */
export const MAX_RESTART_DELAY_MS = 30_000;

/**
 * The restart after a crash: the attempt number (1 after a healthy run, else one more
 * than before) and the delay before it (1 s, 2 s, 4 s … at most 30 s). Without the
 * reset, a service that crashed once a day ago would wait 30 s today.
 */
export function nextRestart(previousAttempts: number, ranMs: number): { attempt: number; delayMs: number } {
  const attempt = ranMs >= STABLE_RUN_MS ? 1 : previousAttempts + 1;
  return { attempt, delayMs: Math.min(MAX_RESTART_DELAY_MS, 500 * 2 ** Math.min(attempt, 6)) };
}
