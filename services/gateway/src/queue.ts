// Queuing an inbound message on JetStream exactly once. A publish whose acknowledgement
// is lost (nats-server died after storing it, a cluster changing leaders) is ambiguous:
// answering "retry" then would make the client send the turn again under a new id and
// the turn would run twice. So the same message is published again under the same
// Nats-Msg-Id until JetStream acknowledges it; its duplicate window drops a second copy.
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient } from '@nats-io/jetstream';
import { TalonError } from '@talon/kit/errors';
import { tracedHeaders } from '@talon/kit/nats';

/** How long a publish is retried; well inside the streams' 2-minute duplicate window. */
export const QUEUE_RETRY_MS = 30_000;

export async function queueInbound(
  js: Pick<JetStreamClient, 'publish'>,
  subject: string,
  data: Uint8Array,
  id: string,
  opts: { retryMs?: number; signal?: AbortSignal; unavailable: string },
): Promise<void> {
  const deadline = Date.now() + (opts.retryMs ?? QUEUE_RETRY_MS);
  for (let attempt = 0; ; attempt++) {
    try {
      await js.publish(subject, data, { msgID: id, headers: tracedHeaders(), timeout: 5000 });
      return;
    } catch (err) {
      if (Date.now() >= deadline || opts.signal?.aborted) throw new TalonError('unavailable', opts.unavailable, { cause: err });
      await sleep(Math.min(2000, 100 * 2 ** attempt));
    }
  }
}
