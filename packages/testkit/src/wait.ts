/**
 * Polls `fn` until it returns a value (not undefined or false) and returns it; fails
 * naming `what` after `timeoutMs`. Tests wait for the signal they assert on, never a
 * fixed time: a busy machine only makes them slower.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
