// One HTTP call of a long-polling channel (Telegram getUpdates, Matrix /sync) through egress,
// read whole with a size cap. Transport trouble and egress refusals come back as an error code
// (the runners retry them with backoff and log one line per change), never as a throw.
import { TalonError } from '@talon/kit/errors';
import type { EgressRequest } from '@talon/kit/egress';

/** The part of an egress response a poller reads. */
export interface PollResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer> & { destroy(): unknown };
}

export interface PollEgress {
  request(req: EgressRequest): Promise<PollResponse>;
}

export interface PollCall {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export type PollAnswer = { status: number; body: string; retryAfter?: string } | { error: string };

/** An answer larger than this is refused (a platform never sends one; a hostile one might). */
const MAX_ANSWER = 16 * 1024 * 1024;

export async function pollCall(egress: PollEgress, call: PollCall, signal: AbortSignal, timeoutMs: number): Promise<PollAnswer> {
  const both = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
  try {
    const res = await egress.request({
      method: call.method,
      url: call.url,
      headers: call.headers,
      ...(call.body !== undefined ? { body: call.body } : {}),
      signal: both,
      headersTimeoutMs: timeoutMs,
      bodyTimeoutMs: timeoutMs,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > MAX_ANSWER) {
        res.body.destroy();
        return { error: 'answer_too_large' };
      }
      chunks.push(chunk);
    }
    const ra = res.headers['retry-after'];
    return { status: res.status, body: Buffer.concat(chunks).toString('utf8'), ...(typeof ra === 'string' ? { retryAfter: ra } : {}) };
  } catch (err) {
    if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') return { error: 'timeout' };
    // Egress refusals (policy, missing secret, sealed vault) are the operator's to fix; retried with backoff.
    return { error: err instanceof TalonError ? `egress_${err.code}` : 'egress_error' };
  }
}
