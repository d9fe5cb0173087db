import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  TERMINAL,
  TRANSITIONS,
  TURN_EVENTS,
  TURN_PHASES,
  TurnRun,
  TurnTransitionError,
  afterClaim,
  nextPhase,
  recoverInbound,
  recoverParked,
  recoveryEvent,
  type InboundFacts,
  type ParkedFacts,
  type TurnEvent,
  type TurnPhase,
} from './turn-machine.ts';

// Every allowed transition, written out: the table in turn-machine.ts must match it exactly.
const ALLOWED: Array<[TurnPhase, TurnEvent, TurnPhase]> = [
  ['received', 'undeliverable', 'dropped'],
  ['received', 'already_parked', 'acked'],
  ['received', 'begin', 'context'],
  ['received', 'reply_found', 'stored'],
  ['received', 'record_pending', 'replied'],
  ['context', 'context_ready', 'looping'],
  ['context', 'failed', 'failed'],
  ['context', 'retry', 'retry'],
  ['looping', 'answered', 'answered'],
  ['looping', 'parked', 'parked'],
  ['looping', 'superseded', 'superseded'],
  ['looping', 'failed', 'failed'],
  ['looping', 'retry', 'retry'],
  ['looping', 'released', 'released'],
  ['parked', 'acked', 'acked'],
  ['parked', 'claimed', 'claimed'],
  ['claimed', 'continue', 'looping'],
  ['claimed', 'reply_found', 'stored'],
  ['claimed', 'record_pending', 'replied'],
  ['claimed', 'give_up', 'failed'],
  ['claimed', 'undeliverable', 'dropped'],
  ['answered', 'reply_stored', 'stored'],
  ['answered', 'superseded', 'superseded'],
  ['failed', 'reply_stored', 'stored'],
  ['failed', 'superseded', 'superseded'],
  ['stored', 'published', 'replied'],
  ['replied', 'recorded', 'recorded'],
  ['replied', 'record_failed', 'deferred'],
  ['deferred', 'acked', 'acked'],
  ['deferred', 'released', 'released'],
  ['recorded', 'acked', 'acked'],
  ['recorded', 'done', 'done'],
  ['superseded', 'acked', 'acked'],
];

describe('turn state machine: transitions', () => {
  it('allows exactly the listed transitions', () => {
    for (const [from, event, to] of ALLOWED) assert.equal(nextPhase(from, event), to, `${from} --${event}-->`);
    const allowed = new Set(ALLOWED.map(([f, e]) => `${f}/${e}`));
    let refused = 0;
    for (const from of TURN_PHASES)
      for (const event of TURN_EVENTS) {
        if (allowed.has(`${from}/${event}`)) continue;
        assert.throws(() => nextPhase(from, event), TurnTransitionError, `${from} --${event}--> must be refused`);
        refused += 1;
      }
    assert.equal(refused, TURN_PHASES.length * TURN_EVENTS.length - ALLOWED.length);
    const listed = Object.entries(TRANSITIONS).flatMap(([f, evs]) => Object.keys(evs).map((e) => `${f}/${e}`));
    assert.deepEqual(listed.sort(), [...allowed].sort());
  });

  it('ends only in terminal phases, and every phase is reachable from an entrance', () => {
    assert.deepEqual([...TERMINAL].sort(), ['acked', 'done', 'dropped', 'released', 'retry'].sort());
    const seen = new Set<TurnPhase>(['received', 'parked']);
    for (let grew = true; grew;) {
      grew = false;
      for (const [from, , to] of ALLOWED)
        if (seen.has(from) && !seen.has(to)) {
          seen.add(to);
          grew = true;
        }
    }
    assert.deepEqual([...seen].sort(), [...TURN_PHASES].sort());
  });

  // The paths the worker and the resumer drive, event by event.
  const PATHS: Array<{ name: string; start: 'received' | 'parked'; events: TurnEvent[]; phases: TurnPhase[] }> = [
    {
      name: 'inbound, answered',
      start: 'received',
      events: ['begin', 'context_ready', 'answered', 'reply_stored', 'published', 'recorded', 'acked'],
      phases: ['received', 'context', 'looping', 'answered', 'stored', 'replied', 'recorded', 'acked'],
    },
    {
      name: 'inbound, parked',
      start: 'received',
      events: ['begin', 'context_ready', 'parked', 'acked'],
      phases: ['received', 'context', 'looping', 'parked', 'acked'],
    },
    {
      name: 'inbound, failed for good (the error is recorded like an answer)',
      start: 'received',
      events: ['begin', 'context_ready', 'failed', 'reply_stored', 'published', 'recorded', 'acked'],
      phases: ['received', 'context', 'looping', 'failed', 'stored', 'replied', 'recorded', 'acked'],
    },
    {
      name: 'inbound, memory down while reading context',
      start: 'received',
      events: ['begin', 'retry'],
      phases: ['received', 'context', 'retry'],
    },
    {
      name: 'inbound, answer out but memory down: deferred to the sweep, message acknowledged',
      start: 'received',
      events: ['begin', 'context_ready', 'answered', 'reply_stored', 'published', 'record_failed', 'acked'],
      phases: ['received', 'context', 'looping', 'answered', 'stored', 'replied', 'deferred', 'acked'],
    },
    {
      name: 'inbound, another execution stored its answer first',
      start: 'received',
      events: ['begin', 'context_ready', 'answered', 'superseded', 'acked'],
      phases: ['received', 'context', 'looping', 'answered', 'superseded', 'acked'],
    },
    {
      name: 'inbound, redelivered after a crash with the answer stored: published, never computed again',
      start: 'received',
      events: ['reply_found', 'published', 'recorded', 'acked'],
      phases: ['received', 'stored', 'replied', 'recorded', 'acked'],
    },
    {
      name: 'inbound, redelivered after a crash with the answer out: only recorded',
      start: 'received',
      events: ['record_pending', 'recorded', 'acked'],
      phases: ['received', 'replied', 'recorded', 'acked'],
    },
    {
      name: 'inbound, redelivered copy of a parked turn',
      start: 'received',
      events: ['already_parked'],
      phases: ['received', 'acked'],
    },
    {
      name: 'resumed, answered',
      start: 'parked',
      events: ['claimed', 'continue', 'answered', 'reply_stored', 'published', 'recorded', 'done'],
      phases: ['parked', 'claimed', 'looping', 'answered', 'stored', 'replied', 'recorded', 'done'],
    },
    {
      name: 'resumed, parked again',
      start: 'parked',
      events: ['claimed', 'continue', 'parked'],
      phases: ['parked', 'claimed', 'looping', 'parked'],
    },
    {
      name: 'resumed, reply stored before a crash',
      start: 'parked',
      events: ['claimed', 'reply_found', 'published', 'recorded', 'done'],
      phases: ['parked', 'claimed', 'stored', 'replied', 'recorded', 'done'],
    },
    {
      name: 'swept, answer out and memory back: recorded by any replica',
      start: 'parked',
      events: ['claimed', 'record_pending', 'recorded', 'done'],
      phases: ['parked', 'claimed', 'replied', 'recorded', 'done'],
    },
    {
      name: 'swept, memory still down: released for the next sweep',
      start: 'parked',
      events: ['claimed', 'record_pending', 'record_failed', 'released'],
      phases: ['parked', 'claimed', 'replied', 'deferred', 'released'],
    },
    {
      name: 'resumed, claimed too often',
      start: 'parked',
      events: ['claimed', 'give_up', 'reply_stored', 'published', 'recorded', 'done'],
      phases: ['parked', 'claimed', 'failed', 'stored', 'replied', 'recorded', 'done'],
    },
    {
      name: 'resumed, transient failure',
      start: 'parked',
      events: ['claimed', 'continue', 'released'],
      phases: ['parked', 'claimed', 'looping', 'released'],
    },
  ];

  for (const p of PATHS)
    it(`drives the path: ${p.name}`, () => {
      const steps: string[] = [];
      const run = new TurnRun(p.start, (from, event, to) => steps.push(`${from}>${event}>${to}`));
      for (const e of p.events) run.step(e);
      assert.deepEqual(run.path, p.phases);
      assert.equal(steps.length, p.events.length);
      assert.ok(TERMINAL.has(run.phase) || run.phase === 'parked', `${p.name} ends at rest, not in ${run.phase}`);
    });

  it('refuses to answer before the context, to publish before storing or twice, to ack unrecorded, or to go on after the ack', () => {
    const r = new TurnRun('received');
    assert.throws(() => r.step('answered'), /phase received cannot take event answered/);
    r.step('begin');
    r.step('context_ready');
    r.step('answered');
    assert.throws(() => r.step('published'), /phase answered cannot take event published/, 'an answer goes out only once it is stored');
    r.step('reply_stored');
    r.step('published');
    assert.throws(() => r.step('published'), TurnTransitionError);
    assert.throws(() => r.step('acked'), TurnTransitionError, 'not acknowledged before it is recorded or deferred');
    r.step('recorded');
    r.step('acked');
    assert.throws(() => r.step('begin'), TurnTransitionError);
    assert.equal(r.phase, 'acked', 'a refused event leaves the phase as it was');
  });
});

describe('turn state machine: every crash point', () => {
  // A crash while the inbound path is in `phase`: JetStream redelivers the message (it was
  // not acked), talon_turns holds what was written; the next execution starts from there.
  const INBOUND_CRASHES: Array<{ phase: TurnPhase; facts: InboundFacts; then: ReturnType<typeof recoverInbound>; next: TurnPhase }> = [
    // Memory may hold the user turn (idempotent by `<id>:user`); nothing else is durable: the turn runs again.
    { phase: 'received', facts: { delivery: 2 }, then: 'begin', next: 'context' },
    { phase: 'context', facts: { delivery: 2 }, then: 'begin', next: 'context' },
    { phase: 'looping', facts: { delivery: 2 }, then: 'begin', next: 'context' },
    { phase: 'answered', facts: { delivery: 2 }, then: 'begin', next: 'context' },
    // The answer is stored: publish that one (a second publish is de-duplicated by the route), no model call.
    { phase: 'stored', facts: { delivery: 2, stored: 'answered' }, then: 'publish_stored', next: 'stored' },
    // Published but the crash came before the delivered mark: published again, de-duplicated.
    { phase: 'replied', facts: { delivery: 2, stored: 'answered' }, then: 'publish_stored', next: 'stored' },
    // Marked delivered: only the records are written.
    { phase: 'replied', facts: { delivery: 3, stored: 'delivered' }, then: 'record_stored', next: 'replied' },
    { phase: 'deferred', facts: { delivery: 2, stored: 'delivered' }, then: 'record_stored', next: 'replied' },
    // Recorded, not yet acked (the DONE mark comes after the ack): recorded again (idempotent), never recomputed.
    { phase: 'recorded', facts: { delivery: 2, stored: 'delivered' }, then: 'record_stored', next: 'replied' },
    // Stored in talon_turns before the ack: the copy is acked and the resumer pokes the turn.
    { phase: 'parked', facts: { delivery: 2, stored: 'parked' }, then: 'ack_parked', next: 'acked' },
    { phase: 'parked', facts: { delivery: 2, stored: 'running' }, then: 'ack_parked', next: 'acked' },
    { phase: 'parked', facts: { delivery: 2, stored: 'done' }, then: 'ack_parked', next: 'acked' },
  ];
  for (const c of INBOUND_CRASHES)
    it(`inbound path, crash in ${c.phase} (${JSON.stringify(c.facts)}): ${c.then}`, () => {
      assert.equal(recoverInbound(c.facts), c.then);
      // The redelivered message starts a new execution at `received`, which takes the recovery's event.
      const next = new TurnRun('received');
      next.step(recoveryEvent(c.then));
      assert.equal(next.phase, c.next);
    });

  it('a first delivery never looks for a parked turn (no talon_turns read on the common path)', () => {
    assert.equal(recoverInbound({ delivery: 1, stored: 'parked' }), 'begin');
    assert.equal(recoverInbound({ delivery: 1, stored: 'answered' }), 'begin');
  });

  // A crash while the resumed path is in `phase`: the turn stays RUNNING until its lease
  // runs out (or PARKED, if the crash came before the claim).
  const PARKED_CRASHES: Array<{ phase: TurnPhase; facts: ParkedFacts; replyStored: boolean; delivered?: boolean; then: TurnPhase[] }> = [
    { phase: 'parked', facts: { status: 'parked', leaseLive: false, approval: 'missing' }, replyStored: false, then: [] },
    { phase: 'claimed', facts: { status: 'running', leaseLive: false }, replyStored: false, then: ['claimed', 'looping'] },
    { phase: 'looping', facts: { status: 'running', leaseLive: false }, replyStored: false, then: ['claimed', 'looping'] },
    { phase: 'answered', facts: { status: 'running', leaseLive: false }, replyStored: false, then: ['claimed', 'looping'] },
    { phase: 'stored', facts: { status: 'answered', leaseLive: false }, replyStored: true, then: ['claimed', 'stored'] },
    { phase: 'replied', facts: { status: 'answered', leaseLive: false }, replyStored: true, then: ['claimed', 'stored'] },
    {
      phase: 'replied',
      facts: { status: 'delivered', leaseLive: false },
      replyStored: true,
      delivered: true,
      then: ['claimed', 'replied'],
    },
    // Memory was down: the released turn (short lease) is claimed by the next sweep and only recorded.
    {
      phase: 'deferred',
      facts: { status: 'delivered', leaseLive: false },
      replyStored: true,
      delivered: true,
      then: ['claimed', 'replied'],
    },
    {
      phase: 'recorded',
      facts: { status: 'delivered', leaseLive: false },
      replyStored: true,
      delivered: true,
      then: ['claimed', 'replied'],
    },
  ];
  for (const c of PARKED_CRASHES)
    it(`resumed path, crash in ${c.phase}: ${c.then.join(' → ') || 'approval written again'}`, () => {
      const action = recoverParked(c.facts);
      if (c.then.length === 0) {
        assert.equal(action, 'write_approval');
        return;
      }
      assert.equal(action, 'claim');
      const next = new TurnRun('parked');
      next.step('claimed');
      next.step(afterClaim({ replyStored: c.replyStored, delivered: c.delivered ?? false, claims: 2, maxAttempts: 3 }));
      assert.deepEqual(next.path.slice(1), c.then);
    });

  it('leaves alone a turn that is done, owned by a live replica, or undecided', () => {
    assert.equal(recoverParked({ status: 'done', leaseLive: false }), 'skip');
    assert.equal(recoverParked({ status: 'running', leaseLive: true }), 'skip');
    assert.equal(recoverParked({ status: 'parked', leaseLive: false, approval: 'pending' }), 'wait');
    assert.equal(recoverParked({ status: 'parked', leaseLive: false, approval: 'settled' }), 'claim');
    // An answer being delivered (or a record waiting out its retry delay) is left to its owner.
    assert.equal(recoverParked({ status: 'answered', leaseLive: true }), 'skip');
    assert.equal(recoverParked({ status: 'delivered', leaseLive: true }), 'skip');
    assert.equal(recoverParked({ status: 'delivered', leaseLive: false }), 'claim');
  });

  it('gives up on a turn claimed more often than allowed, but still publishes or records an answer it stored', () => {
    assert.equal(afterClaim({ replyStored: false, delivered: false, claims: 4, maxAttempts: 3 }), 'give_up');
    assert.equal(afterClaim({ replyStored: true, delivered: false, claims: 9, maxAttempts: 3 }), 'reply_found');
    // A record is retried until memory takes it, however many sweeps that takes.
    assert.equal(afterClaim({ replyStored: true, delivered: true, claims: 90, maxAttempts: 3 }), 'record_pending');
    assert.equal(afterClaim({ replyStored: false, delivered: false, claims: 3, maxAttempts: 3 }), 'continue');
  });
});
