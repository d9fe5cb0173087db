// The turn as an explicit state machine: every phase a turn passes through, the
// events that move it on, and what a crash at each point leaves durable and what the
// next execution does about it. Pure: no I/O. The inbound worker (worker.ts) and the
// resumer (resume.ts) drive the same TurnEngine through it, and docs/architecture.md
// ("The turn") describes the same table.
//
// Two entrances, one table, one order once the answer is obtained:
//   inbound:  received → context → looping → answered → stored → replied → recorded → acked
//                                         ↘ parked → acked   (the resumer owns it now)
//   resumed:  parked → claimed → looping → answered → stored → replied → recorded → done
// The answer (reply and the turns to record) is stored in talon_turns before it goes
// out, so whoever finds it after a crash publishes that one (`reply_found`) or, once it
// is out, only records it (`record_pending`): the model is never asked twice for an
// answer that was obtained. A record memory refuses (an outage) leaves the turn
// `deferred` in talon_turns, retried by the resumer's sweep until memory takes it.

export const TURN_PHASES = [
  /** The inbound message was delivered (JetStream holds it until it is acked). */
  'received',
  /** The user turn is stored in memory and history and recall are being read. */
  'context',
  /** The model and tools run (agent-loop.ts). */
  'looping',
  /** A tool call waits for the user's approval: the turn is stored in talon_turns. */
  'parked',
  /** A replica owns a parked turn (RUNNING, leased) and continues it. */
  'claimed',
  /** The answer is computed, not yet stored or sent. */
  'answered',
  /** The turn failed for good: an error reply is computed. */
  'failed',
  /** The answer (tool records and assistant turn, or a failed turn's marker) is in memory. */
  'recorded',
  /** The reply and the turns to record are stored in talon_turns, so a crash republishes that reply. */
  'stored',
  /** The reply is out on its route. */
  'replied',
  /** The reply is out, memory refused the records: they wait in talon_turns (delivered) for the sweep. */
  'deferred',
  /** Terminal, inbound: the message left the work queue. */
  'acked',
  /** Terminal, resumed: the parked turn is marked DONE. */
  'done',
  /** Terminal: the message is nak'ed (transient failure) and comes back as `received`. */
  'retry',
  /** Terminal, resumed: the claim is released after a transient failure; a sweep takes it up. */
  'released',
  /** Terminal: another execution owns this turn (it parked or claimed it first). */
  'superseded',
  /** Terminal: the message is unreadable or names no reply route; it is terminated. */
  'dropped',
] as const;
export type TurnPhase = (typeof TURN_PHASES)[number];

export const TURN_EVENTS = [
  'undeliverable',
  'already_parked',
  'begin',
  'context_ready',
  'answered',
  'parked',
  'superseded',
  'failed',
  'retry',
  'released',
  'claimed',
  'continue',
  'reply_found',
  'record_pending',
  'give_up',
  'published',
  'recorded',
  'record_failed',
  'reply_stored',
  'acked',
  'done',
] as const;
export type TurnEvent = (typeof TURN_EVENTS)[number];

/** Every allowed transition; anything not listed is a bug and throws. */
export const TRANSITIONS: Readonly<Record<TurnPhase, Readonly<Partial<Record<TurnEvent, TurnPhase>>>>> = Object.freeze({
  received: {
    undeliverable: 'dropped',
    already_parked: 'acked',
    begin: 'context',
    // A redelivery finds the answer stored by an earlier execution: publish that one, or only record it.
    reply_found: 'stored',
    record_pending: 'replied',
  },
  context: { context_ready: 'looping', failed: 'failed', retry: 'retry' },
  looping: {
    answered: 'answered',
    parked: 'parked',
    superseded: 'superseded',
    failed: 'failed',
    retry: 'retry',
    released: 'released',
  },
  parked: { acked: 'acked', claimed: 'claimed' },
  claimed: { continue: 'looping', reply_found: 'stored', record_pending: 'replied', give_up: 'failed', undeliverable: 'dropped' },
  // Another execution stored its answer first (create or compare-and-set lost): it finishes the turn.
  answered: { reply_stored: 'stored', superseded: 'superseded' },
  failed: { reply_stored: 'stored', superseded: 'superseded' },
  stored: { published: 'replied' },
  replied: { recorded: 'recorded', record_failed: 'deferred' },
  // The inbound message is acknowledged (the stored turn carries the records on); a resumed turn is released.
  deferred: { acked: 'acked', released: 'released' },
  recorded: { acked: 'acked', done: 'done' },
  acked: {},
  done: {},
  retry: {},
  released: {},
  superseded: { acked: 'acked' },
  dropped: {},
});

export const TERMINAL: ReadonlySet<TurnPhase> = new Set(TURN_PHASES.filter((p) => Object.keys(TRANSITIONS[p]).length === 0));

export class TurnTransitionError extends Error {
  readonly from: TurnPhase;
  readonly event: TurnEvent;
  constructor(from: TurnPhase, event: TurnEvent) {
    super(`a turn in phase ${from} cannot take event ${event}`);
    this.name = 'TurnTransitionError';
    this.from = from;
    this.event = event;
  }
}

/** The phase after `event`; throws TurnTransitionError when the table does not allow it. */
export function nextPhase(from: TurnPhase, event: TurnEvent): TurnPhase {
  const to = TRANSITIONS[from][event];
  if (!to) throw new TurnTransitionError(from, event);
  return to;
}

export type StepListener = (from: TurnPhase, event: TurnEvent, to: TurnPhase) => void;

/** One execution of a turn: its phase, moved only through the table. */
export class TurnRun {
  private current: TurnPhase;
  readonly path: TurnPhase[];
  private readonly listener: StepListener | undefined;

  constructor(start: 'received' | 'parked', listener?: StepListener) {
    this.current = start;
    this.path = [start];
    this.listener = listener;
  }

  get phase(): TurnPhase {
    return this.current;
  }

  step(event: TurnEvent): TurnPhase {
    const from = this.current;
    const to = nextPhase(from, event);
    this.current = to;
    this.path.push(to);
    this.listener?.(from, event, to);
    return to;
  }
}

// ---- Crash recovery ------------------------------------------------------------
// What is durable when an execution stops at any point, and what the next one does.
// The inbound message stays in JetStream until `acked`; talon_turns holds a parked turn
// (PARKED, RUNNING with a lease, or DONE with its content dropped) and every obtained
// answer (RUNNING with the reply and the turns to record; `delivered` once it is out).

/** A stored turn as the machine sees it (turn-state.ts storedStatus). */
export type StoredStatus = 'parked' | 'running' | 'answered' | 'delivered' | 'done';

/** What the worker knows when a message is delivered. */
export interface InboundFacts {
  /** JetStream's delivery count (1 on the first delivery). */
  delivery: number;
  /** The turn's record in talon_turns, when there is one (looked up on redeliveries only). */
  stored?: StoredStatus;
}

/**
 * `begin`: run the turn (again); `ack_parked`: the resumer owns it, acknowledge the copy and poke the resumer;
 * `publish_stored`: the answer was obtained before a crash, publish and record that one; `record_stored`: it
 * is out already, only record it.
 */
export type InboundRecovery = 'begin' | 'ack_parked' | 'publish_stored' | 'record_stored';

/** Whether talon_turns must be read for this delivery (a first delivery cannot have stored anything). */
export function mustLookForParked(delivery: number): boolean {
  return delivery > 1;
}

export function recoverInbound(f: InboundFacts): InboundRecovery {
  if (!mustLookForParked(f.delivery) || f.stored === undefined) return 'begin';
  switch (f.stored) {
    case 'answered':
      return 'publish_stored';
    case 'delivered':
      return 'record_stored';
    default:
      return 'ack_parked';
  }
}

/** The event that starts a redelivery's execution for a recovery. */
export function recoveryEvent(r: InboundRecovery): TurnEvent {
  switch (r) {
    case 'begin':
      return 'begin';
    case 'ack_parked':
      return 'already_parked';
    case 'publish_stored':
      return 'reply_found';
    case 'record_stored':
      return 'record_pending';
  }
}

/** What the resumer knows about a stored turn. */
export interface ParkedFacts {
  status: StoredStatus;
  /** RUNNING and its owner's lease has not run out (a released turn's short lease is its retry delay). */
  leaseLive: boolean;
  /** PARKED: the approval record — never written (crash between turn and approval), undecided, or settled (decided or expired). */
  approval?: 'missing' | 'pending' | 'settled';
}

/**
 * `skip`: nothing to do (done, or another replica holds a live lease); `write_approval`:
 * create the approval the crash left unwritten; `wait`: the user has not decided;
 * `claim`: take the turn (compare-and-set) and continue it, publish its stored reply or record it.
 */
export type ParkedRecovery = 'skip' | 'write_approval' | 'wait' | 'claim';

export function recoverParked(f: ParkedFacts): ParkedRecovery {
  switch (f.status) {
    case 'done':
      return 'skip';
    case 'running':
    case 'answered':
    case 'delivered':
      return f.leaseLive ? 'skip' : 'claim';
    case 'parked':
      if (f.approval === 'missing') return 'write_approval';
      return f.approval === 'settled' ? 'claim' : 'wait';
  }
}

/**
 * After a claim: a stored reply is published as it is, or only recorded once delivered
 * (never computed twice, however often it was claimed); too many claims without an answer give up.
 */
export function afterClaim(t: { replyStored: boolean; delivered: boolean; claims: number; maxAttempts: number }): TurnEvent {
  if (t.replyStored && t.delivered) return 'record_pending';
  if (t.replyStored) return 'reply_found';
  return t.claims > t.maxAttempts ? 'give_up' : 'continue';
}
