// Credentials never reach a record or the model through the orchestrator:
// - tool outputs are redacted as they come back, before they join the turn's
//   messages (which the model reads and a parked turn stores);
// - the answer and tool records are redacted before they are written to memory;
// - a turn whose context still carries a credential (stored before redaction
//   existed) is refused by egress's leak scanner; the offending messages are then
//   redacted and the call is made once more, and the user is told, instead of the
//   whole conversation failing from then on.
// The orchestrator holds no secret and no fingerprint: egress's scanner
// (EgressService.RedactText) does the finding.
import { createClient, unary, type TlsMaterial } from '@talon/kit/grpc';
import { EgressRefusal } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import { EgressServiceClient, type RedactedText, type Turn } from '@talon/proto';
import type { CompletionClient } from './agent-loop.ts';
import type { LlmMessage } from './llm/types.ts';

export interface TextRedactor {
  /** One result per text, in order. */
  redactTexts(texts: readonly string[]): Promise<RedactedText[]>;
}

/** The reason egress gives when a request carries credential material. */
export const LEAK_BLOCKED = 'secret_leak_blocked';

export function isLeakBlocked(err: unknown): boolean {
  return err instanceof EgressRefusal && err.reason === LEAK_BLOCKED;
}

/** Redacts `items` through one call, writing back only the ones that changed; returns the labels removed. */
async function redactInPlace<T>(
  r: TextRedactor,
  items: readonly T[],
  get: (x: T) => string,
  set: (x: T, text: string) => void,
): Promise<string[]> {
  const todo = items.filter((x) => get(x) !== '');
  if (todo.length === 0) return [];
  const res = await r.redactTexts(todo.map(get));
  if (res.length !== todo.length) throw new TalonError('internal', `RedactText answered ${res.length} texts for ${todo.length}`);
  const labels = new Set<string>();
  res.forEach((x, i) => {
    if (x.labels.length === 0) return;
    set(todo[i]!, x.text);
    for (const l of x.labels) labels.add(l);
  });
  return [...labels];
}

/** Turns about to be stored, with every credential in their content replaced. */
export async function redactTurns(r: TextRedactor, turns: readonly Turn[]): Promise<Turn[]> {
  const out = turns.map((t) => ({ ...t }));
  await redactInPlace(
    r,
    out,
    (t) => t.content,
    (t, text) => (t.content = text),
  );
  return out;
}

/** Redacts the messages of a model request in place (they are the turn's progress); returns the labels removed. */
export function redactMessages(r: TextRedactor, messages: readonly LlmMessage[]): Promise<string[]> {
  return redactInPlace(
    r,
    messages,
    (m) => m.content,
    (m, text) => (m.content = text),
  );
}

/**
 * A completion client that, when egress refuses a model call because the context
 * carries a credential, redacts the messages and tries once more. `onRedacted`
 * hears what was removed. A second refusal, or one where nothing could be
 * redacted, fails the turn with a message that names no secret.
 */
export function leakGuarded(llm: CompletionClient, r: TextRedactor, onRedacted: (labels: string[]) => void): CompletionClient {
  return {
    async complete(req, onDelta, signal) {
      try {
        return await llm.complete(req, onDelta, signal);
      } catch (err) {
        if (!isLeakBlocked(err)) throw err;
        const labels = await redactMessages(r, req.messages);
        if (labels.length === 0) throw leakFailure(err);
        onRedacted(labels);
        try {
          return await llm.complete(req, onDelta, signal);
        } catch (again) {
          throw isLeakBlocked(again) ? leakFailure(again) : again;
        }
      }
    },
  };
}

function leakFailure(cause: unknown): TalonError {
  return new TalonError(
    'policy_denied',
    'this conversation carries credential material that could not be removed, so it was not sent to the model; start a new conversation',
    { cause },
  );
}

/** What the reply tells the user about credentials removed on the way (empty when nothing was). */
export function redactionNotice(fromMessage: readonly string[], fromContext: readonly string[]): string {
  const parts: string[] = [];
  const what = (labels: readonly string[]) =>
    labels.map((l) => (l === 'vault_secret' ? "a value held in Talon's vault" : `a credential (${l})`)).join(', ');
  if (fromMessage.length > 0)
    parts.push(
      `Note: ${what(fromMessage)} was removed from your message before it was stored or sent anywhere. Treat it as exposed and rotate it.`,
    );
  if (fromContext.length > 0)
    parts.push(
      `Note: earlier content of this conversation held ${what(fromContext)}; it was removed before this request reached the model.`,
    );
  return parts.join('\n');
}

/** EgressService.RedactText over mTLS (the orchestrator may call only this method). */
export class EgressRedactor implements TextRedactor {
  private readonly client: EgressServiceClient;

  constructor(addr: string, tls: TlsMaterial) {
    this.client = createClient(EgressServiceClient, addr, tls, 'egress');
  }

  async redactTexts(texts: readonly string[]): Promise<RedactedText[]> {
    try {
      const res = await unary(this.client, this.client.redactText, { texts: [...texts] }, { timeoutMs: 5000 });
      return res.texts;
    } catch (err) {
      // Unavailable is transient: the turn (or the record) is retried rather than stored unchecked.
      const te = err instanceof TalonError ? err : undefined;
      throw new TalonError(
        te?.code === 'invalid_argument' ? 'payload_too_large' : 'unavailable',
        `egress could not redact text (${te?.code ?? 'error'})`,
        {
          cause: err,
        },
      );
    }
  }

  close(): void {
    this.client.close();
  }
}
