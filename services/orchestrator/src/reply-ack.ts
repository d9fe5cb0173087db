// An API reply travels by core NATS to the gateway replica holding the HTTP request,
// and core NATS delivers at most once: a reply published while nats-server restarts,
// or before the gateway has subscribed again after its reconnect, is gone, and the
// client waits for its timeout although the answer is stored. So the reply is sent as
// a request that the gateway acknowledges (an empty response), and sent again until it
// is acknowledged or the deadline passes — after which the gateway that waited is gone
// (its replica id died with it) and the answer stays in memory for the client to read.
// A second copy is harmless: the gateway answers the first and acknowledges the rest.
// Only the first attempt is awaited; the retries run in the background, so a turn's slot
// and its recording never wait on a gateway that may be gone.

export type AckedSend = () => Promise<unknown>;

export interface AckedOptions {
  /** Give up after this long (ms since the first attempt). */
  deadlineMs: number;
  /** Pause between attempts (ms); the request's own timeout comes on top. */
  retryMs: number;
  /** True once retrying is pointless (the connection is closed for good: the process is stopping). */
  stopped?: () => boolean;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** A pause that does not keep the process alive (a retry must not hold up a shutdown). */
const unrefSleep = (ms: number) =>
  new Promise<void>((r) => {
    setTimeout(r, ms).unref();
  });

/** Sends until acknowledged; true when acknowledged, false when the deadline passed first. */
export async function sendUntilAcked(send: AckedSend, o: AckedOptions): Promise<boolean> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? unrefSleep;
  const end = now() + o.deadlineMs;
  for (;;) {
    try {
      await send();
      return true;
    } catch {
      // No responders (the gateway is resubscribing or gone), a timeout, a connection closed
      // while NATS restarts: all alike, tried again until the deadline.
    }
    if (now() + o.retryMs > end || o.stopped?.()) return false;
    await sleep(o.retryMs);
  }
}

/**
 * One attempt now; when it fails, the retries continue in the background (`onGiveUp` once the
 * deadline passes). Resolves after the first attempt: true when it was acknowledged.
 */
export async function sendAckedInBackground(send: AckedSend, o: AckedOptions & { onGiveUp: () => void }): Promise<boolean> {
  try {
    await send();
    return true;
  } catch {
    void sendUntilAcked(send, o).then((acked) => {
      if (!acked) o.onGiveUp();
    });
    return false;
  }
}
