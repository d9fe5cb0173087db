// POST /hooks/routine/<name>: an event for the routines listening with `--on webhook:<name>`.
// Signed exactly like the generic webhook (X-Talon-Timestamp, X-Talon-Signature =
// sha256=hex(HMAC-SHA256("<timestamp>.<raw body>")), the key named by
// GATEWAY_WEBHOOK_SIGNING_SECRET, checked by the vault) and refused before anything else
// when it does not match. The body, size-capped and redacted by egress's scanner (no
// secret in a NATS message), is stored in TALON_EVENTS (deduplicated by its signature)
// before the caller hears 202; an orchestrator then fires the routines' turns.
import { createHash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import { TalonError } from '@talon/kit/errors';
import { tracedHeaders } from '@talon/kit/nats';
import { capPayload, ROUTINE_NAME, webhookEventSubject } from '@talon/records/routines';
import { header, type HeaderBag } from './channels/types.ts';
import type { WebhookIngress } from './ingress.ts';
import type { TextRedactor } from './redaction.ts';

export const ROUTINE_HOOK_PREFIX = '/hooks/routine/';

export interface RoutineHookDeps {
  ingress: Pick<WebhookIngress, 'verify'>;
  redactor: TextRedactor;
  js: Pick<JetStreamClient, 'publish'>;
}

/** Verifies, redacts and queues one routine webhook; WebhookRejected (401) when the signature does not match. */
export async function acceptRoutineHook(
  d: RoutineHookDeps,
  name: string,
  headers: HeaderBag,
  raw: Buffer,
): Promise<{ status: number; body: unknown }> {
  if (!ROUTINE_NAME.test(name)) throw new TalonError('not_found', `no routine webhook ${JSON.stringify(name.slice(0, 48))}`);
  await d.ingress.verify('webhook', headers, raw);
  const text = capPayload(raw.toString('utf8'));
  const [red] = await d.redactor.redactTexts([text]);
  const payload = red && red.labels.length > 0 ? red.text : text;
  // A replay of the same signed request (within the stream's window) is stored once.
  const sig = createHash('sha256')
    .update(header(headers, 'x-talon-signature') ?? '')
    .digest('hex')
    .slice(0, 32);
  const ack = await d.js.publish(webhookEventSubject(name), new TextEncoder().encode(payload), {
    msgID: `hook-${name}-${sig}`,
    headers: tracedHeaders(),
    timeout: 5000,
  });
  return { status: 202, body: { accepted: true, duplicate: ack.duplicate } };
}
