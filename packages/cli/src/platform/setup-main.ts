// Entry of the setup child (./setup-child.ts starts it). Reads requests, one JSON line each:
// {"id": n, "step": name, "req": {...}}, or {"id": n, "cancel": true} to stop a step that
// retries; runs each step of ./setup-steps.ts as it comes (several at once) and writes one
// answer line per request: {"id": n, "ok": true, "res": {...}} or {"id": n, "ok": false,
// "error": message}. Ends when stdin closes and every step has answered. Answers may hold
// database passwords: they go only to the supervisor's pipe, never to a log.
import { createInterface } from 'node:readline';
import { runStep } from './setup-steps.ts';

const cancels = new Map<number, AbortController>();

function answer(msg: object): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const msg: unknown = JSON.parse(line);
  if (typeof msg !== 'object' || msg === null || !('id' in msg) || typeof msg.id !== 'number') continue;
  const id = msg.id;
  if ('cancel' in msg) {
    cancels.get(id)?.abort();
    continue;
  }
  const ac = new AbortController();
  cancels.set(id, ac);
  void runStep(msg, ac.signal)
    .then(
      (res) => answer({ id, ok: true, res }),
      (err: unknown) => answer({ id, ok: false, error: err instanceof Error ? err.message : String(err) }),
    )
    .finally(() => cancels.delete(id));
}
