// The orchestrator's metrics (definitions: @talon/kit/metrics). A turn's outcome is
// the event that ended its computation (turn-machine.ts's closed set of events); an
// LLM call is labelled with the configured provider and model, never the prompt.
import { counter, histogram, METRICS } from '@talon/kit/metrics';
import type { TurnEvent, TurnPhase } from './turn-machine.ts';

export const turns = counter(METRICS.turns);
export const turnDuration = histogram(METRICS.turnDuration);
export const llmRequests = counter(METRICS.llmRequests);
export const llmTokens = counter(METRICS.llmTokens);
export const llmDuration = histogram(METRICS.llmRequestDuration);

/** Phases a delivery's computation runs in; the event that leaves them for another phase is its outcome. */
const COMPUTING: ReadonlySet<TurnPhase> = new Set<TurnPhase>(['received', 'context', 'looping', 'claimed']);
/** Events that only move the computation on. */
const PROGRESS: ReadonlySet<TurnEvent> = new Set<TurnEvent>(['begin', 'context_ready', 'continue']);

/** The `outcome` of a step, or undefined when the step does not end the computation. Pure. */
export function turnOutcome(from: TurnPhase, event: TurnEvent): TurnEvent | undefined {
  return COMPUTING.has(from) && !PROGRESS.has(event) ? event : undefined;
}

/** Counts the turn's outcome when this step is the one that ends its computation. */
export function countTurnStep(from: TurnPhase, event: TurnEvent): void {
  const outcome = turnOutcome(from, event);
  if (outcome !== undefined) turns.add({ outcome });
}

/** The `outcome` of a failed LLM call: from its HTTP status, a timeout, or `error`. Pure. */
export function llmOutcome(err: unknown): string {
  const status = (err as { status?: unknown } | undefined)?.status;
  if (typeof status === 'number') {
    if (status === 429) return 'rate_limited';
    return status >= 500 ? 'server_error' : 'client_error';
  }
  const name = (err as Error | undefined)?.name;
  if (name === 'TimeoutError' || (err as { code?: unknown } | undefined)?.code === 'timeout') return 'timeout';
  return name === 'AbortError' ? 'aborted' : 'error';
}
