// The end of every turn whose answer is obtained, on both entrances (worker.ts,
// resume.ts): the answer is stored in talon_turns first (the caller holds a claim on
// that record), then published unless it is marked delivered, then recorded in memory.
// A record memory does not take (an outage) is not retried by running the turn again:
// the stored turn is released, `delivered`, with a short lease, and the resumer's sweep
// records it later — on any replica, after restarts, until memory takes it.
import type { Logger } from '@talon/kit/log';
import { OutboundMessage, type InboundMessage } from '@talon/proto';
import { withRetries } from './pending-records.ts';
import type { Claim } from './resume.ts';
import type { TurnEngine } from './turn-engine.ts';
import type { TurnRun } from './turn-machine.ts';
import { doneRecord } from './turn-state.ts';
import { onRecordFailure } from './turn.ts';

/** `recorded`: in memory; `deferred`: left in talon_turns for the sweep; `dropped`: memory refused it for good; `lost`: another execution owns the turn now. */
export type Delivered = 'recorded' | 'deferred' | 'dropped' | 'lost';

export interface DeliverDeps {
  engine: Pick<TurnEngine, 'publish' | 'record'>;
  log: Logger;
}

/** Publishes the claimed turn's stored reply (unless delivered) and records its turns (turn-machine.ts: stored/replied → recorded | deferred). */
export async function deliverAndRecord(
  deps: DeliverDeps,
  claim: Claim,
  inbound: InboundMessage,
  run: Pick<TurnRun, 'step'>,
  opts: { tries: number; baseDelayMs: number },
): Promise<Delivered> {
  const { engine, log } = deps;
  const t = claim.turn;
  let marking: Promise<boolean> = Promise.resolve(true);
  if (!t.delivered) {
    await engine.publish(inbound, OutboundMessage.decode(t.reply));
    run.step('published');
    // Marked alongside the record (the user has the reply already): a retry never publishes it again.
    marking = claim.write({ ...claim.turn, delivered: true }).catch(() => false);
  }
  try {
    await withRetries(() => engine.record(inbound, t.records), opts.tries, opts.baseDelayMs);
  } catch (err) {
    await marking;
    run.step('record_failed');
    const action = onRecordFailure(err, claim.turn.claims);
    if (action.kind === 'drop') {
      log.error(
        { inbound_id: t.inboundId, code: action.code, err: (err as Error).message },
        'memory refused the answer of this turn for good; it is not recorded',
      );
      return (await claim.write(doneRecord(claim.turn, Date.now()))) ? 'dropped' : 'lost';
    }
    log.warn(
      { inbound_id: t.inboundId, err: (err as Error).message, retry_in_ms: action.delayMs },
      'recording the answer in memory failed; it stays in talon_turns and is recorded when memory is back',
    );
    const ok = await claim.write({ ...claim.turn, delivered: true, owner: '', leaseUntilMs: Date.now() + action.delayMs });
    return ok ? 'deferred' : 'lost';
  }
  await marking;
  run.step('recorded');
  return 'recorded';
}
