import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SUBJECTS, replyDelivery } from '@talon/kit/subjects';
import { MissedRunPolicy, Role, RoutineRunState, type Routine } from '@talon/proto';
import {
  checkRoutine,
  checkTimeZone,
  claimed,
  claimVerdict,
  dueSlot,
  finished,
  fired,
  newRun,
  nextSlotAfter,
  nextWake,
  parseDeliver,
  parseMissed,
  parseRoutineTurnId,
  parseSchedule,
  routineInbound,
  routineTurnId,
  runsToPrune,
  slotAtOrBefore,
  RoutineRuleError,
} from './rules.ts';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const SKIP = MissedRunPolicy.MISSED_RUN_POLICY_SKIP;
const ONCE = MissedRunPolicy.MISSED_RUN_POLICY_RUN_ONCE;

function routine(over: Partial<Routine> = {}): Routine {
  return {
    name: 'standup',
    cron: '0 8 * * 1-5',
    timeZone: 'Europe/Berlin',
    prompt: 'Summarise my day',
    userId: 'alice',
    deliver: 'web',
    missed: SKIP,
    paused: false,
    createdAtMs: 0,
    updatedAtMs: 0,
    activeSinceMs: 0,
    createdBy: 'cli:test',
    trigger: '',
    heartbeat: false,
    checklist: '',
    ...over,
  };
}

describe('routine schedules: cron in an IANA time zone', () => {
  it('reads the cron expression in the routine’s zone, winter and summer', () => {
    const s = parseSchedule('0 8 * * 1-5', 'Europe/Berlin');
    // Friday noon → Monday 08:00 local: UTC+1 in December, UTC+2 in July.
    assert.equal(iso(nextSlotAfter(s, at('2026-12-04T12:00:00Z'))), '2026-12-07T07:00:00.000Z');
    assert.equal(iso(nextSlotAfter(s, at('2026-07-03T12:00:00Z'))), '2026-07-06T06:00:00.000Z');
    const ny = parseSchedule('0 8 * * *', 'America/New_York');
    assert.equal(iso(nextSlotAfter(ny, at('2026-12-07T00:00:00Z'))), '2026-12-07T13:00:00.000Z');
    const kolkata = parseSchedule('0 9 * * *', 'Asia/Kolkata');
    assert.equal(iso(nextSlotAfter(kolkata, at('2026-12-07T00:00:00Z'))), '2026-12-07T03:30:00.000Z');
  });

  it('runs a slot in the spring-forward gap once, at the first instant after the gap', () => {
    // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    const s = parseSchedule('30 2 * * *', 'Europe/Berlin');
    let t = at('2026-03-28T12:00:00Z');
    const runs: string[] = [];
    for (let i = 0; i < 3; i++) runs.push(iso((t = nextSlotAfter(s, t)!))!);
    assert.deepEqual(runs, ['2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z', '2026-03-31T00:30:00.000Z']);
  });

  it('runs a slot in the repeated fall-back hour once, not twice', () => {
    // Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    const s = parseSchedule('30 2 * * *', 'Europe/Berlin');
    let t = at('2026-10-24T12:00:00Z');
    const runs: string[] = [];
    for (let i = 0; i < 2; i++) runs.push(iso((t = nextSlotAfter(s, t)!))!);
    assert.deepEqual(runs, ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  });

  it('keeps hourly slots an hour apart in real time across both DST changes', () => {
    const s = parseSchedule('0 * * * *', 'Europe/Berlin');
    for (const start of ['2026-03-28T23:30:00Z', '2026-10-24T23:30:00Z']) {
      let t = at(start);
      const slots: number[] = [];
      for (let i = 0; i < 5; i++) slots.push((t = nextSlotAfter(s, t)!));
      for (let i = 1; i < slots.length; i++) assert.equal(slots[i]! - slots[i - 1]!, 3_600_000, `${start}: ${slots.map(iso).join(' ')}`);
    }
  });

  it('takes 6 fields as seconds first', () => {
    const s = parseSchedule('*/3 * * * * *', 'UTC');
    assert.equal(iso(nextSlotAfter(s, at('2026-12-07T10:00:00.500Z'))), '2026-12-07T10:00:03.000Z');
    assert.equal(iso(nextSlotAfter(s, at('2026-12-07T10:00:03.000Z'))), '2026-12-07T10:00:06.000Z', 'strictly after');
  });

  it('finds the latest slot at or before an instant', () => {
    const s = parseSchedule('*/3 * * * * *', 'UTC');
    assert.equal(iso(slotAtOrBefore(s, at('2026-12-07T10:00:03.000Z'))), '2026-12-07T10:00:03.000Z', 'inclusive');
    assert.equal(iso(slotAtOrBefore(s, at('2026-12-07T10:00:05.999Z'))), '2026-12-07T10:00:03.000Z');
    assert.equal(iso(slotAtOrBefore(s, at('2026-12-07T10:00:02.999Z'))), '2026-12-07T10:00:00.000Z');
  });

  it('refuses a bad cron expression naming the field', () => {
    assert.throws(
      () => parseSchedule('61 * * * *', 'UTC'),
      (e: Error) => e instanceof RoutineRuleError && /minute: 61/.test(e.message),
    );
    assert.throws(() => parseSchedule('0 8 * * 1-9', 'UTC'), /invalid cron expression "0 8 \* \* 1-9": Invalid value for dayOfWeek/);
    assert.throws(() => parseSchedule('every morning', 'UTC'), /invalid cron expression "every morning".*5 fields/);
    assert.throws(() => parseSchedule('* * * * * * *', 'UTC'), /invalid cron expression/, 'no year field');
  });

  it('refuses an unknown time zone and names the canonical one', () => {
    assert.throws(() => checkTimeZone('Mars/Olympus_Mons'), /unknown time zone "Mars\/Olympus_Mons": give an IANA time zone/);
    assert.throws(() => checkTimeZone('CEST+99'), /unknown time zone/);
    assert.throws(() => checkTimeZone('+01:00'), /unknown time zone "\+01:00"/);
    assert.throws(() => checkTimeZone(''), /--tz is empty/);
    assert.equal(checkTimeZone('Europe/Berlin'), 'Europe/Berlin');
    assert.equal(checkTimeZone('UTC'), 'UTC');
  });
});

describe('what a replica fires when it looks', () => {
  const s = parseSchedule('*/10 * * * * *', 'UTC');
  const t0 = at('2026-12-07T10:00:00Z');
  const grace = 5_000;

  it('fires the slot that just came, once per look', () => {
    assert.deepEqual(dueSlot(s, routine(), t0 - 1, t0 + 20, grace), { kind: 'fire', slotMs: t0, missed: false, skipped: 0 });
    // The next look, before the next slot: nothing.
    assert.deepEqual(dueSlot(s, routine(), t0 + 20, t0 + 9_000, grace), { kind: 'none' });
  });

  it('never fires a slot at or before the routine became active, nor a paused routine', () => {
    assert.deepEqual(dueSlot(s, routine({ activeSinceMs: t0 }), 0, t0 + 20, grace), { kind: 'none' });
    assert.deepEqual(dueSlot(s, routine({ paused: true }), t0 - 1, t0 + 20, grace), { kind: 'none' });
  });

  it('after a stall fires only the newest slot and counts the others', () => {
    const d = dueSlot(s, routine(), t0 - 1, t0 + 40_500, grace);
    assert.deepEqual(d, { kind: 'fire', slotMs: t0 + 40_000, missed: false, skipped: 4 });
  });

  it('skips missed slots under the skip policy', () => {
    // All replicas were down from before t0 until t0 + 63 s: newest slot t0 + 60 s is 3 s old (in grace).
    assert.equal(dueSlot(s, routine(), 0, t0 + 63_000, grace).kind, 'fire');
    // Down until t0 + 68 s: the newest slot is 8 s old, past the grace: skipped.
    const d = dueSlot(s, routine({ activeSinceMs: t0 - 1 }), 0, t0 + 68_000, grace);
    assert.deepEqual(d, { kind: 'skip', slotMs: t0 + 60_000, skipped: 7 });
  });

  it('runs the most recent missed slot once under run-once', () => {
    const d = dueSlot(s, routine({ missed: ONCE, activeSinceMs: t0 - 1 }), 0, t0 + 68_000, grace);
    assert.deepEqual(d, { kind: 'fire', slotMs: t0 + 60_000, missed: true, skipped: 6 });
    // The next look does not run it (nor any older one) again.
    assert.deepEqual(dueSlot(s, routine({ missed: ONCE, activeSinceMs: t0 - 1 }), t0 + 68_000, t0 + 69_000, grace), { kind: 'none' });
  });

  it('wakes at the next slot of any active routine, or after the longest wait', () => {
    const daily = parseSchedule('0 8 * * *', 'UTC');
    assert.equal(
      nextWake(
        [
          { s: daily, paused: false },
          { s, paused: false },
        ],
        t0 + 1,
        30_000,
      ),
      t0 + 10_000,
    );
    assert.equal(nextWake([{ s, paused: true }], t0 + 1, 30_000), t0 + 30_001);
    assert.equal(nextWake([], t0, 30_000), t0 + 30_000);
  });
});

describe('routine records', () => {
  it('routes web to a conversation kept in memory and channels to their durable reply route', () => {
    const web = parseDeliver('web', 'standup');
    assert.deepEqual(web, { channel: 'web', threadId: 'routine-standup', replySubject: SUBJECTS.keptReply });
    assert.equal(replyDelivery(web.replySubject), 'kept');
    const tg = parseDeliver('telegram:-1001234', 'standup');
    assert.deepEqual(tg, { channel: 'telegram', threadId: 'chat:-1001234', replySubject: 'talon.outbound.ch.telegram' });
    assert.equal(replyDelivery(tg.replySubject), 'durable');
    assert.equal(parseDeliver('webhook:ops.alerts', 'x').threadId, 'ops.alerts');
    assert.throws(() => parseDeliver('telegram:@me', 'x'), /numeric Telegram chat id/);
    assert.throws(() => parseDeliver('webhook:', 'x'), /webhook:<thread>/);
    assert.throws(() => parseDeliver('email:a@b', 'x'), /--deliver must be web, telegram:<chat id> or webhook:<thread>/);
  });

  it('checks the whole record with precise errors', () => {
    assert.doesNotThrow(() => checkRoutine(routine()));
    assert.throws(() => checkRoutine(routine({ name: 'Bad Name' })), /routine name "Bad Name" must be/);
    assert.throws(() => checkRoutine(routine({ prompt: '  ' })), /--prompt is empty/);
    assert.throws(() => checkRoutine(routine({ userId: '' })), /--user is required/);
    assert.throws(() => checkRoutine(routine({ timeZone: 'Nowhere/Land' })), /unknown time zone "Nowhere\/Land"/);
    assert.throws(() => parseMissed('always'), /--missed must be skip or run-once/);
  });

  it('names a firing’s turn by routine and slot, and reads it back', () => {
    for (const name of ['standup', 'daily-2', 'a_b-3-4']) {
      const id = routineTurnId(name, 1_796_630_400_000);
      assert.deepEqual(parseRoutineTurnId(id), { name, scheduledAtMs: 1_796_630_400_000 });
    }
    assert.equal(parseRoutineTurnId('3f2a1b6c-0000-4000-8000-000000000000'), undefined);
    assert.equal(parseRoutineTurnId('telegram-abc'), undefined);
  });

  it('makes a firing one ordinary inbound message of the routine’s user', () => {
    const r = routine();
    const m = routineInbound(r, parseDeliver('web', r.name), 1000, 'Summarise my day', [], 2000);
    assert.equal(m.id, 'routine-standup-1000');
    assert.deepEqual(m.conversation, { userId: 'alice', channel: 'web', threadId: 'routine-standup' });
    assert.deepEqual(m.messages, [{ role: Role.ROLE_USER, content: 'Summarise my day', name: '' }]);
    assert.deepEqual(m.reply, { subject: SUBJECTS.keptReply, streamSubject: '', requestId: m.id });
    assert.equal(m.agent, undefined, 'no agent: the usual routing');
    assert.equal(routineInbound({ ...r, agent: 'research' }, parseDeliver('web', r.name), 1000, 'x', [], 2000).agent, 'research');
  });
});

describe('claims of a firing', () => {
  const now = 1_000_000;
  it('takes a request or a lapsed claim, waits for a live one, leaves a fired one', () => {
    const req = newRun('r', now, { manual: true, requestedAtMs: now });
    assert.deepEqual(claimVerdict(req, now), { kind: 'take', takeover: false });
    const c = claimed(newRun('r', now), 'a', now, 15_000, false);
    assert.equal(c.state, RoutineRunState.ROUTINE_RUN_STATE_CLAIMED);
    assert.deepEqual(claimVerdict(c, now + 14_999), { kind: 'wait', untilMs: now + 15_000 });
    assert.deepEqual(claimVerdict(c, now + 15_000), { kind: 'take', takeover: true });
    const taken = claimed(c, 'b', now + 15_000, 15_000, true);
    assert.equal(taken.owner, 'b');
    assert.equal(taken.takeovers, 1);
    assert.equal(taken.firstClaimedAtMs, now, 'the first claim is remembered (give-up deadline)');
    assert.deepEqual(claimVerdict(fired(taken, now + 15_100), now + 99_000), { kind: 'done' });
  });

  it('keeps an outcome recorded before the firing was marked', () => {
    const c = claimed(newRun('r', now), 'a', now, 15_000, false);
    const ok = finished(c, '', now + 50);
    assert.equal(ok.state, RoutineRunState.ROUTINE_RUN_STATE_OK);
    const after = fired(ok, now + 60);
    assert.equal(after.state, RoutineRunState.ROUTINE_RUN_STATE_OK);
    assert.equal(after.firedAtMs, now + 60);
    assert.equal(finished(fired(c, now + 10), 'llm_unavailable', now + 90).state, RoutineRunState.ROUTINE_RUN_STATE_FAILED);
  });

  it('prunes all but the newest runs', () => {
    assert.deepEqual(runsToPrune([5, 1, 4, 2, 3], 3), [2, 1]);
    assert.deepEqual(runsToPrune([1, 2], 3), []);
    assert.deepEqual(runsToPrune([1, 2], 0), [2, 1]);
  });
});
