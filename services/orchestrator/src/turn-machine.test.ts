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
  ['context', 'context_ready', 'looping'],
  ['context', 'failed', 'failed'],
  ['context', 'retry', 'retry'],
  ['looping', 'answered', 'answered'],
  ['looping', 'answered_recorded', 'recorded'],
  ['looping', 'parked', 'parked'],
  ['looping', 'superseded', 'superseded'],
  ['looping', 'failed', 'failed'],
  ['looping', 'retry', 'retry'],
  ['looping', 'released', 'released'],
  ['parked', 'acked', 'acked'],
  ['parked', 'claimed', 'claimed'],
  ['claimed', 'continue', 'looping'],
  ['claimed', 'reply_found', 'stored'],
  ['claimed', 'give_up', 'failed'],
  ['claimed', 'undeliverable', 'dropped'],
  ['answered', 'published', 'replied'],
  ['failed', 'published', 'replied'],
  ['failed', 'reply_stored', 'stored'],
  ['replied', 'recorded', 'recorded'],
  ['replied', 'record_failed', 'retry'],
  ['replied', 'done', 'done'],
  ['recorded', 'acked', 'acked'],
  ['recorded', 'reply_stored', 'stored'],
  ['stored', 'published', 'replied'],
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
      events: ['begin', 'context_ready', 'answered', 'published', 'recorded', 'acked'],
      phases: ['received', 'context', 'looping', 'answered', 'replied', 'recorded', 'acked'],
    },
    {
      name: 'inbound, parked',
      start: 'received',
      events: ['begin', 'context_ready', 'parked', 'acked'],
      phases: ['received', 'context', 'looping', 'parked', 'acked'],
    },
    {
      name: 'inbound, failed for good',
      start: 'received',
      events: ['begin', 'context_ready', 'failed', 'published', 'recorded', 'acked'],
      phases: ['received', 'context', 'looping', 'failed', 'replied', 'recorded', 'acked'],
    },
    {
      name: 'inbound, memory down while reading context',
      start: 'received',
      events: ['begin', 'retry'],
      phases: ['received', 'context', 'retry'],
    },
    {
      name: 'inbound, answer out but not recorded',
      start: 'received',
      events: ['begin', 'context_ready', 'answered', 'published', 'record_failed'],
      phases: ['received', 'context', 'looping', 'answered', 'replied', 'retry'],
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
      events: ['claimed', 'continue', 'answered_recorded', 'reply_stored', 'published', 'done'],
      phases: ['parked', 'claimed', 'looping', 'recorded', 'stored', 'replied', 'done'],
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
      events: ['claimed', 'reply_found', 'published', 'done'],
      phases: ['parked', 'claimed', 'stored', 'replied', 'done'],
    },
    {
      name: 'resumed, claimed too often',
      start: 'parked',
      events: ['claimed', 'give_up', 'reply_stored', 'published', 'done'],
      phases: ['parked', 'claimed', 'failed', 'stored', 'replied', 'done'],
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

  it('refuses to answer before the context, to publish twice, or to go on after the ack', () => {
    const r = new TurnRun('received');
    assert.throws(() => r.step('answered'), /phase received cannot take event answered/);
    r.step('begin');
    r.step('context_ready');
    r.step('answered');
    r.step('published');
    assert.throws(() => r.step('published'), TurnTransitionError);
    r.step('recorded');
    r.step('acked');
    assert.throws(() => r.step('begin'), TurnTransitionError);
    assert.equal(r.phase, 'acked', 'a refused event leaves the phase as it was');
  });
});

describe('turn state machine: every crash point', () => {
  // A crash while the inbound path is in `phase`: JetStream redelivers the message (it was
  // not acked), talon_turns holds what was written; the next execution starts from there.
  const INBOUND_CRASHES: Array<{ phase: TurnPhase; facts: InboundFacts; then: ReturnType<typeof recoverInbound> }> = [
    // Memory may hold the user turn (idempotent by `<id>:user`); nothing else is durable.
    { phase: 'received', facts: { delivery: 2 }, then: 'begin' },
    { phase: 'context', facts: { delivery: 2 }, then: 'begin' },
    { phase: 'looping', facts: { delivery: 2 }, then: 'begin' },
    { phase: 'answered', facts: { delivery: 2 }, then: 'begin' },
    // The reply is out: a channel reply's second publish is de-duplicated, an API reply's ignored.
    { phase: 'replied', facts: { delivery: 2 }, then: 'begin' },
    // Recorded by turn id: the rerun's records replace nothing twice.
    { phase: 'recorded', facts: { delivery: 3 }, then: 'begin' },
    // Stored in talon_turns before the ack: the copy is acked and the resumer pokes the turn.
    { phase: 'parked', facts: { delivery: 2, stored: 'parked' }, then: 'ack_parked' },
    { phase: 'parked', facts: { delivery: 2, stored: 'running' }, then: 'ack_parked' },
    { phase: 'parked', facts: { delivery: 2, stored: 'done' }, then: 'ack_parked' },
  ];
  for (const c of INBOUND_CRASHES)
    it(`inbound path, crash in ${c.phase} (${JSON.stringify(c.facts)}): ${c.then}`, () => {
      assert.equal(recoverInbound(c.facts), c.then);
      // The redelivered message starts a new execution at `received`, which takes the recovery's event.
      const next = new TurnRun('received');
      next.step(c.then === 'begin' ? 'begin' : 'already_parked');
      assert.equal(next.phase, c.then === 'begin' ? 'context' : 'acked');
    });

  it('a first delivery never looks for a parked turn (no talon_turns read on the common path)', () => {
    assert.equal(recoverInbound({ delivery: 1, stored: 'parked' }), 'begin');
  });

  // A crash while the resumed path is in `phase`: the turn stays RUNNING until its lease
  // runs out (or PARKED, if the crash came before the claim).
  const PARKED_CRASHES: Array<{ phase: TurnPhase; facts: ParkedFacts; replyStored: boolean; then: TurnPhase[] }> = [
    { phase: 'parked', facts: { status: 'parked', leaseLive: false, approval: 'missing' }, replyStored: false, then: [] },
    { phase: 'claimed', facts: { status: 'running', leaseLive: false }, replyStored: false, then: ['claimed', 'looping'] },
    { phase: 'looping', facts: { status: 'running', leaseLive: false }, replyStored: false, then: ['claimed', 'looping'] },
    { phase: 'recorded', facts: { status: 'running', leaseLive: false }, replyStored: false, then: ['claimed', 'looping'] },
    { phase: 'stored', facts: { status: 'running', leaseLive: false }, replyStored: true, then: ['claimed', 'stored'] },
    { phase: 'replied', facts: { status: 'running', leaseLive: false }, replyStored: true, then: ['claimed', 'stored'] },
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
      next.step(afterClaim({ replyStored: c.replyStored, claims: 2, maxAttempts: 3 }));
      assert.deepEqual(next.path.slice(1), c.then);
    });

  it('leaves alone a turn that is done, owned by a live replica, or undecided', () => {
    assert.equal(recoverParked({ status: 'done', leaseLive: false }), 'skip');
    assert.equal(recoverParked({ status: 'running', leaseLive: true }), 'skip');
    assert.equal(recoverParked({ status: 'parked', leaseLive: false, approval: 'pending' }), 'wait');
    assert.equal(recoverParked({ status: 'parked', leaseLive: false, approval: 'settled' }), 'claim');
  });

  it('gives up on a turn claimed more often than allowed, but still publishes a reply it stored', () => {
    assert.equal(afterClaim({ replyStored: false, claims: 4, maxAttempts: 3 }), 'give_up');
    assert.equal(afterClaim({ replyStored: true, claims: 9, maxAttempts: 3 }), 'reply_found');
    assert.equal(afterClaim({ replyStored: false, claims: 3, maxAttempts: 3 }), 'continue');
  });
});
