// The turn as an explicit state machine: every phase a turn passes through, the
// events that move it on, and what a crash at each point leaves durable and what the
// next execution does about it. Pure: no I/O. The inbound worker (worker.ts) and the
// resumer (resume.ts) drive the same TurnEngine through it, and docs/architecture.md
// ("The turn") describes the same table.
//
// Two entrances, one table:
//   inbound:  received → context → looping → answered → replied → recorded → acked
//                                         ↘ parked → acked   (the resumer owns it now)
//   resumed:  parked → claimed → looping → recorded → stored → replied → done
//                              ↘ stored (a reply computed before a crash is published, never a second)
// The inbound entrance records after the reply (the user is answered a round trip
// sooner; redelivery covers a crash in between), the resumed one before (its message is
// acknowledged already, so nothing would redeliver it): so `recorded` and `replied`
// come in a different order on the two paths, each fixed by this table.

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
  /** The answer is computed, not yet sent. */
  'answered',
  /** The turn failed for good: an error reply is computed. */
  'failed',
  /** The answer (tool records and assistant turn) is in memory. */
  'recorded',
  /** The reply is stored in the parked turn, so a crash republishes that one. */
  'stored',
  /** The reply is out on its route. */
  'replied',
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
  'answered_recorded',
  'parked',
  'superseded',
  'failed',
  'retry',
  'released',
  'claimed',
  'continue',
  'reply_found',
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
  received: { undeliverable: 'dropped', already_parked: 'acked', begin: 'context' },
  context: { context_ready: 'looping', failed: 'failed', retry: 'retry' },
  looping: {
    answered: 'answered',
    answered_recorded: 'recorded',
    parked: 'parked',
    superseded: 'superseded',
    failed: 'failed',
    retry: 'retry',
    released: 'released',
  },
  parked: { acked: 'acked', claimed: 'claimed' },
  claimed: { continue: 'looping', reply_found: 'stored', give_up: 'failed', undeliverable: 'dropped' },
  answered: { published: 'replied' },
  failed: { published: 'replied', reply_stored: 'stored' },
  // An error reply of the inbound path has nothing to record: it goes straight on to `recorded`.
  replied: { recorded: 'recorded', record_failed: 'retry', done: 'done' },
  recorded: { acked: 'acked', reply_stored: 'stored' },
  stored: { published: 'replied' },
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
// The inbound message stays in JetStream until `acked`; a parked turn stays in
// talon_turns (PARKED, RUNNING with a lease, or DONE with its content dropped).

/** What the worker knows when a message is delivered. */
export interface InboundFacts {
  /** JetStream's delivery count (1 on the first delivery). */
  delivery: number;
  /** The turn's record in talon_turns, when there is one (looked up on redeliveries only). */
  stored?: 'parked' | 'running' | 'done';
}

/** `begin`: run the turn (again); `ack_parked`: the resumer owns it, acknowledge the copy and poke the resumer. */
export type InboundRecovery = 'begin' | 'ack_parked';

/** Whether talon_turns must be read for this delivery (a first delivery cannot have parked). */
export function mustLookForParked(delivery: number): boolean {
  return delivery > 1;
}

export function recoverInbound(f: InboundFacts): InboundRecovery {
  return mustLookForParked(f.delivery) && f.stored !== undefined ? 'ack_parked' : 'begin';
}

/** What the resumer knows about a stored turn. */
export interface ParkedFacts {
  status: 'parked' | 'running' | 'done';
  /** RUNNING and its owner's lease has not run out. */
  leaseLive: boolean;
  /** PARKED: the approval record — never written (crash between turn and approval), undecided, or settled (decided or expired). */
  approval?: 'missing' | 'pending' | 'settled';
}

/**
 * `skip`: nothing to do (done, or another replica holds a live lease); `write_approval`:
 * create the approval the crash left unwritten; `wait`: the user has not decided;
 * `claim`: take the turn (compare-and-set) and continue it.
 */
export type ParkedRecovery = 'skip' | 'write_approval' | 'wait' | 'claim';

export function recoverParked(f: ParkedFacts): ParkedRecovery {
  switch (f.status) {
    case 'done':
      return 'skip';
    case 'running':
      return f.leaseLive ? 'skip' : 'claim';
    case 'parked':
      if (f.approval === 'missing') return 'write_approval';
      return f.approval === 'settled' ? 'claim' : 'wait';
  }
}

/** After a claim: a stored reply is published as it is (never computed twice); too many claims give up. */
export function afterClaim(t: { replyStored: boolean; claims: number; maxAttempts: number }): TurnEvent {
  if (t.replyStored) return 'reply_found';
  return t.claims > t.maxAttempts ? 'give_up' : 'continue';
}
