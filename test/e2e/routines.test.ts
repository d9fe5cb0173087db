// Routines end to end, with two orchestrator processes on real NATS: a routine due
// every 3 s fires exactly once per slot while both run (every slot's claim is contended
// by both replicas), each firing is one ordinary turn (the model is asked once per
// slot, and the turn lands in the user's web conversation), it keeps firing after one
// orchestrator is killed with SIGKILL, and a claim left by a replica that died before
// publishing is taken over when its lease lapses. The CLI adds, lists, runs now,
// pauses, resumes and removes routines, and refuses a bad cron expression, an unknown
// time zone and an unknown user with precise errors; the gateway shows a user their own
// routines (the web UI's view). Everything waits for records in
// NATS KV, never for fixed sleeps.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RoutineRunState, type RoutineRun } from '@talon/proto';
import { claimed, newRun, nextSlotAfter, parseSchedule, RoutineRuns } from '@talon/records/routines';
import { receivedTexts, startTestPlatform, type RecordedLlmRequest, type TestPlatform } from '@talon/testkit';

const PROMPT = 'routine tick probe: what is on my list?';
const CRON = '*/3 * * * * *';

function lastUserText(req: RecordedLlmRequest): string | undefined {
  return receivedTexts(req)
    .filter((m) => m.role === 'user')
    .at(-1)?.text;
}

describe('routines: scheduled turns fired once across two orchestrators', () => {
  let tp: TestPlatform;
  let runs: RoutineRuns;
  let aliceToken: string;

  const talon = (args: string[]) => tp.cliAsync(args);
  const ok = async (args: string[]) => {
    const r = await talon(args);
    assert.equal(r.code, 0, `talon ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const all = async (name: string): Promise<RoutineRun[]> => (await runs.recent(name, 50)).reverse();
  const isOpen = (r: RoutineRun) =>
    r.state === RoutineRunState.ROUTINE_RUN_STATE_REQUESTED ||
    r.state === RoutineRunState.ROUTINE_RUN_STATE_CLAIMED ||
    r.state === RoutineRunState.ROUTINE_RUN_STATE_FIRED;
  /** Runs of `name` that answered, once at least `n` did (scheduled after `afterMs`). */
  const answered = (name: string, n: number, afterMs = 0) =>
    tp.until(
      `${n} answered runs of ${name}`,
      async () => {
        const done = (await all(name)).filter((r) => r.scheduledAtMs > afterMs && r.state === RoutineRunState.ROUTINE_RUN_STATE_OK);
        return done.length >= n ? done : undefined;
      },
      60_000,
    );
  /** Once nothing is in flight: every run's turn asked the model exactly once. */
  const assertExactlyOnce = async (name: string) => {
    const settled = await tp.until(
      `every run of ${name} to finish`,
      async () => {
        const rs = await all(name);
        return rs.some(isOpen) ? undefined : rs;
      },
      60_000,
    );
    const asked = tp.llm!.requests.filter((r) => lastUserText(r) === PROMPT).length;
    assert.equal(asked, settled.length, `model calls for the prompt vs runs: ${settled.map((r) => r.scheduledAtMs).join(',')}`);
    assert.ok(
      settled.every((r) => r.state === RoutineRunState.ROUTINE_RUN_STATE_OK),
      'every run answered',
    );
    assert.equal(new Set(settled.map((r) => r.turnId)).size, settled.length, 'one turn per run');
    return settled;
  };

  before(async () => {
    tp = await startTestPlatform({
      replicas: { orchestrator: 2 },
      env: { ORCHESTRATOR_ROUTINE_LEASE_MS: '1500' },
    });
    runs = await new RoutineRuns(await tp.admin()).open();
    aliceToken = await tp.token('alice-web', { userId: 'alice' });
    await ok(['users', 'add', 'alice']);
  });
  after(async () => {
    await tp?.stop();
  });

  it('refuses a bad cron expression, an unknown time zone and an unknown user, saying what to do', async () => {
    const base = ['routines', 'add', 'x', '--prompt', PROMPT, '--user', 'alice'];
    const cron = await talon([...base, '--cron', '61 * * * *']);
    assert.equal(cron.code, 1);
    assert.match(cron.stderr, /invalid cron expression "61 \* \* \* \*": Invalid value for minute: 61\. Use 5 fields/);
    const fields = await talon([...base, '--cron', 'every morning']);
    assert.match(fields.stderr, /invalid cron expression "every morning"/);
    const tz = await talon([...base, '--cron', '0 8 * * 1-5', '--tz', 'Europe/Berlinn']);
    assert.equal(tz.code, 1);
    assert.match(tz.stderr, /unknown time zone "Europe\/Berlinn": give an IANA time zone such as Europe\/Berlin/);
    const user = await talon(['routines', 'add', 'x', '--cron', '0 8 * * *', '--prompt', 'p', '--user', 'nobody']);
    assert.equal(user.code, 1);
    assert.match(user.stderr, /no registered user nobody: add it first with `talon users add nobody`/);
    const deliver = await talon([...base, '--cron', '0 8 * * *', '--deliver', 'email:me']);
    assert.match(deliver.stderr, /--deliver must be web, telegram:<chat id> or webhook:<thread>/);
    const missing = await talon(['routines', 'pause', 'never-added']);
    assert.match(missing.stderr, /no routine never-added \(see `talon routines list`\)/);
    assert.match(await ok(['routines', 'list']), /No routines\. Add one with: talon routines add/);
  });

  it('fires each slot exactly once while two orchestrators run, as a turn in the user’s web conversation', async () => {
    const out = await ok(['routines', 'add', 'tick', '--cron', CRON, '--tz', 'Europe/Berlin', '--prompt', PROMPT, '--user', 'alice']);
    assert.match(out, /Routine tick added: runs as alice, delivers to web, missed slots: skip\.\nNext run: .* Europe\/Berlin/);
    const dup = await talon(['routines', 'add', 'tick', '--cron', CRON, '--prompt', PROMPT, '--user', 'alice']);
    assert.match(dup.stderr, /a routine named tick exists already: remove it first with `talon routines rm tick`/);

    const done = await answered('tick', 4);
    // Consecutive slots, none left out while both replicas ran.
    const slots = done.map((r) => r.scheduledAtMs);
    for (let i = 1; i < slots.length; i++) assert.equal(slots[i]! - slots[i - 1]!, 3000, `slots ${slots.join(',')}`);
    // Both replicas schedule (each slot's claim is contended by both).
    for (const i of ['orchestrator', 'orchestrator-2']) assert.match(tp.log(i), /routines: scheduler started/, i);

    await ok(['routines', 'pause', 'tick']);
    const settled = await assertExactlyOnce('tick');

    // The turns are the user's: in the web conversation routine-tick, one question and one answer per run.
    const res = await fetch(`${tp.gatewayUrl}/v1/conversations/routine-tick/messages?channel=web&limit=200`, {
      headers: { authorization: `Bearer ${aliceToken}` },
    });
    assert.equal(res.status, 200);
    const messages = ((await res.json()) as { messages: Array<{ role: string; content: string }> }).messages;
    assert.equal(messages.filter((m) => m.role === 'user' && m.content === PROMPT).length, settled.length);
    assert.equal(messages.filter((m) => m.role === 'assistant' && m.content === `echo: ${PROMPT}`).length, settled.length);

    // The web UI's view: the caller's own routines with their runs; another user sees none of them.
    const view = async (token: string) => {
      const r = await fetch(`${tp.gatewayUrl}/v1/routines`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 200);
      return (
        (await r.json()) as { routines: Array<{ name: string; paused: boolean; conversation: unknown; runs: Array<{ state: string }> }> }
      ).routines;
    };
    const mine = await view(aliceToken);
    assert.deepEqual(
      mine.map((r) => [r.name, r.paused, r.conversation]),
      [['tick', true, { id: 'routine-tick', channel: 'web' }]],
    );
    assert.ok(mine[0]!.runs.length >= 4 && mine[0]!.runs.every((r) => r.state === 'ok'));
    assert.deepEqual(await view(await tp.token('bob-web', { userId: 'bob' })), []);

    const list = await ok(['routines', 'list']);
    assert.match(list, /^tick {2}paused {2}cron='\*\/3 \* \* \* \* \*' tz=Europe\/Berlin user=alice deliver=web missed=skip$/m);
    assert.match(list, /^ {2}next: -$/m);
    assert.match(list, /ok +fired \+\d+ ms {2}turn=routine-tick-\d+/);
  });

  it('keeps firing after one orchestrator is killed, and takes over a claim whose holder died before publishing', async () => {
    const proc = tp.platform.process('orchestrator-2');
    assert.ok(proc?.running);
    proc.kill('SIGKILL');
    await proc.exited;
    const killedAt = Date.now();
    await ok(['routines', 'resume', 'tick']);

    // A replica that claimed a coming slot and died before publishing: its lease lapses soon after the slot.
    const schedule = parseSchedule(CRON, 'Europe/Berlin');
    const ghostSlot = nextSlotAfter(schedule, Date.now() + 4000)!;
    const ghost = claimed(newRun('tick', ghostSlot), 'replica-that-died', ghostSlot - 100, 1600, false);
    assert.notEqual(await runs.create(ghost), false);
    await answered('tick', 4, killedAt);
    const taken = await tp.until(
      'the dead replica’s claim to be taken over and answered',
      async () => {
        const r = await runs.get('tick', ghostSlot);
        return r && r.run.state === RoutineRunState.ROUTINE_RUN_STATE_OK ? r.run : undefined;
      },
      30_000,
    );
    assert.equal(taken.takeovers, 1);
    assert.equal(taken.turnId, `routine-tick-${ghostSlot}`);
    assert.match(tp.log('orchestrator'), /routines: took over a claim whose lease lapsed/);

    await ok(['routines', 'pause', 'tick']);
    await assertExactlyOnce('tick');
  });

  it('runs a routine now on request, and removes it with its runs', async () => {
    await ok([
      'routines',
      'add',
      'manual',
      '--cron',
      '0 0 1 1 *',
      '--tz',
      'UTC',
      '--prompt',
      PROMPT,
      '--user',
      'alice',
      '--missed',
      'run-once',
    ]);
    const paused = await talon(['routines', 'run-now', 'tick']);
    assert.equal(paused.code, 1);
    assert.match(paused.stderr, /routine tick is paused: resume it first with `talon routines resume tick`/);
    const now = await ok(['routines', 'run-now', 'manual']);
    assert.match(now, /^Run of manual (fired|ok) as turn routine-manual-\d+\.$/m);
    await answered('manual', 1);
    const list = await ok(['routines', 'list']);
    assert.match(list, /^manual {2}active {2}cron='0 0 1 1 \*' tz=UTC user=alice deliver=web missed=run-once$/m);
    assert.match(list, /ok .* run-now {2}turn=routine-manual-\d+/);

    assert.match(await ok(['routines', 'rm', 'tick']), /^Routine tick removed \(\d+ recorded run\(s\) deleted\)\.$/m);
    assert.deepEqual(await runs.slots('tick'), []);
    const again = await talon(['routines', 'rm', 'tick']);
    assert.match(again.stderr, /no routine tick/);
    assert.doesNotMatch(await ok(['routines', 'list']), /^tick /m);
  });
});
