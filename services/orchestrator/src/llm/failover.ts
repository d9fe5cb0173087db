// When one provider of a model fails, is the next one tried? Pure.
//
// Yes for what another provider may well not share: the provider is overloaded or
// limiting us (429, 5xx, 408), it did not answer in time, or it could not be reached
// (egress's upstream_error / upstream_timeout). No for a request the next provider
// would refuse the same way (other 4xx), for egress's own refusals (policy, a sealed
// vault, a leak: the same egress decides for every provider), for the caller giving up,
// and once text was streamed to the user (a second provider's answer would be spliced
// onto the first's; the turn is retried as a whole instead).
import { EgressRefusal } from '@talon/kit/egress';
import { TalonError } from '@talon/kit/errors';
import { LlmHttpError } from './client.ts';

export interface FailoverContext {
  /** Text of this call already reached the user (a streamed delta). */
  streamed: boolean;
  /** The caller's own signal was aborted (the turn is being cancelled, not the provider failing). */
  aborted: boolean;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'upstream_timeout']);
/** The connection to the provider (relayed by egress) broke under the request or its answer. */
const CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** A timeout anywhere in the error's cause chain (the per-call AbortSignal.timeout, undici's timers). */
function isTimeout(err: unknown, depth = 0): boolean {
  const e = err as { name?: unknown; code?: unknown; cause?: unknown } | undefined;
  if (e?.name === 'TimeoutError' || (typeof e?.code === 'string' && TIMEOUT_CODES.has(e.code))) return true;
  return depth < 3 && e?.cause !== undefined && isTimeout(e.cause, depth + 1);
}

export function failsOver(err: unknown, ctx: FailoverContext): boolean {
  if (ctx.aborted || ctx.streamed) return false;
  if (err instanceof LlmHttpError) return err.status === 429 || err.status === 408 || err.status >= 500;
  if (err instanceof EgressRefusal) return err.code === 'upstream_error' || err.code === 'upstream_timeout';
  if (isTimeout(err)) return true;
  // Egress itself unreachable: every provider goes through it, so the turn is retried instead.
  if (err instanceof TalonError) return false;
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}
