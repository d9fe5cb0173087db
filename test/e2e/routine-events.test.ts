// Routines fired by events and heartbeats, end to end on the real platform with two
// orchestrator processes: an event published on a talon.events. subject fires exactly
// one turn (each event to one replica, through their shared durable consumer), its
// payload reaching the model redacted and inside an <untrusted> block; a signed POST to
// /hooks/routine/<name> fires one turn and a badly signed one none; an imported memory
// document fires the routines listening for its key prefix; a heartbeat whose model
// answers HEARTBEAT_OK delivers nothing (outcome quiet) and one whose model reports
// something delivers once through the webhook channel (outcome delivered). The CLI
// refuses a subject outside talon.events. Waits for records and deliveries, never sleeps.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { askConversations } from '@talon/kit/conversations';
import { RoutineRunState, type RoutineRun } from '@talon/proto';
import { HEARTBEAT_OK, RoutineRuns } from '@talon/records/routines';
import { receivedTexts, startChannelPlatform, type ChannelPlatform, type RecordedLlmRequest } from '@talon/testkit';
import { RULE_FIXTURES } from '../../services/egress/src/scan/rule-fixtures.ts';

const LEAK = RULE_FIXTURES.github_pat!.positives[0]!;

function lastUserText(req: RecordedLlmRequest): string {
  return (
    receivedTexts(req)
      .filter((m) => m.role === 'user')
      .at(-1)?.text ?? ''
  );
}

describe('routines fired by events, and heartbeats', () => {
  let cp: ChannelPlatform;
  let runs: RoutineRuns;
  /** What the fake model answers a heartbeat check. */
  let heartbeatAnswer = HEARTBEAT_OK;

  const ok = async (args: string[]) => {
    const r = await cp.talon(args);
    assert.equal(r.code, 0, `talon ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const asked = (needle: string) => cp.llm.requests.filter((r) => lastUserText(r).includes(needle));
  /** The runs of `name` once `n` have finished (ok or failed), none in flight. */
  const finishedRuns = (name: string, n: number) =>
    cp.tp.until(
      `${n} finished runs of ${name}`,
      async () => {
        const rs = await runs.recent(name, 50);
        const done = rs.filter(
          (r) => r.state === RoutineRunState.ROUTINE_RUN_STATE_OK || r.state === RoutineRunState.ROUTINE_RUN_STATE_FAILED,
        );
        return done.length >= n && done.length === rs.length ? rs : undefined;
      },
      60_000,
    );

  before(async () => {
    cp = await startChannelPlatform({
      replicas: { orchestrator: 2 },
      env: { ORCHESTRATOR_ROUTINE_LEASE_MS: '1500' },
      llm: {
        reply: (req) => {
          const text = lastUserText(req);
          return text.includes('This is a heartbeat check') ? heartbeatAnswer : `echo: ${text.slice(0, 40)}`;
        },
      },
    });
    runs = await new RoutineRuns(await cp.tp.admin()).open();
    await ok(['users', 'add', 'alice']);
  });
  after(async () => {
    await cp?.stop();
  });

  it('refuses a subject outside talon.events., and two triggers at once, saying what to do', async () => {
    const base = ['routines', 'add', 'x', '--prompt', 'p', '--user', 'alice'];
    const outside = await cp.talon([...base, '--on', 'subject:talon.inbound.api']);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /outside talon\.events\.>: routines listen only to subjects under talon\.events\./);
    const own = await cp.talon([...base, '--on', 'subject:talon.events.webhook.x']);
    assert.match(own.stderr, /names Talon's own events/);
    const both = await cp.talon([...base, '--on', 'webhook:x', '--cron', '0 8 * * *']);
    assert.match(both.stderr, /give either --cron or --on \(one trigger per routine\), not both/);
    const none = await cp.talon(base);
    assert.match(none.stderr, /a routine needs a trigger: --cron <expr> or --on <event>/);
    const hb = await cp.talon([...base, '--cron', '0 8 * * *', '--heartbeat']);
    assert.match(hb.stderr, /--heartbeat needs --checklist <document key>/);
  });

  it('fires one turn per NATS event with two orchestrators, the payload redacted and untrusted', async () => {
    const out = await ok([
      'routines',
      'add',
      'deploys',
      '--on',
      'subject:talon.events.deploys.*',
      '--prompt',
      'Deploy note:',
      '--user',
      'alice',
    ]);
    assert.match(out, /It runs on each message published on talon\.events\.deploys\.\*/);
    const admin = await cp.tp.admin();
    const payloads = ['deploy-probe-1 api v1', 'deploy-probe-2 web v7', `deploy-probe-3 token ${LEAK}`];
    for (const [i, p] of payloads.entries()) admin.publish(`talon.events.deploys.svc${i}`, new TextEncoder().encode(p));
    admin.publish('talon.events.other', new TextEncoder().encode('deploy-probe-ignored'));
    await admin.flush();

    const done = await finishedRuns('deploys', 3);
    assert.equal(done.length, 3);
    assert.ok(done.every((r) => r.state === RoutineRunState.ROUTINE_RUN_STATE_OK));
    // Exactly one model call per event, though both replicas consume the stream.
    for (const p of ['deploy-probe-1', 'deploy-probe-2', 'deploy-probe-3']) assert.equal(asked(p).length, 1, p);
    assert.equal(asked('deploy-probe-ignored').length, 0);
    const text = lastUserText(asked('deploy-probe-1')[0]!);
    assert.match(
      text,
      /^Deploy note:\n\n<untrusted source="event" trigger="subject:talon\.events\.deploys\.\*" subject="talon\.events\.deploys\.svc0">/,
    );
    assert.ok(!cp.llm.requests.some((r) => JSON.stringify(r.body).includes(LEAK)), 'the secret never reaches the model');
    for (const i of ['orchestrator', 'orchestrator-2']) assert.match(cp.tp.log(i), /routines: scheduler started/, i);
    const list = await ok(['routines', 'list']);
    assert.match(list, /^deploys {2}active {2}on=subject:talon\.events\.deploys\.\* user=alice deliver=web$/m);
    assert.match(list, /ok .*event=talon\.events\.deploys\.svc\d#\d+ {2}turn=routine-deploys-\d+/);
  });

  it('fires one turn per signed routine webhook, none for a bad signature', async () => {
    await ok(['routines', 'add', 'ci', '--on', 'webhook:ci', '--prompt', 'CI says:', '--user', 'alice', '--deliver', 'webhook:ci-thread']);
    const good = await cp.webhook.deliver(cp.gatewayUrl, { build: 'ci-probe-good' }, { path: '/hooks/routine/ci' });
    assert.equal(good.status, 202, good.text);
    const bad = await cp.webhook.deliver(
      cp.gatewayUrl,
      { build: 'ci-probe-bad' },
      { path: '/hooks/routine/ci', signature: `sha256=${'0'.repeat(64)}` },
    );
    assert.equal(bad.status, 401);
    const forged = await cp.webhook.deliver(
      cp.gatewayUrl,
      { build: 'ci-probe-forged' },
      { path: '/hooks/routine/ci', signature: cp.webhook.sign(Math.floor(Date.now() / 1000), '{}', 'wrong-key') },
    );
    assert.equal(forged.status, 401);

    await finishedRuns('ci', 1);
    // The answer goes to the webhook channel's callback, on the routine's thread.
    await cp.tp.until('the ci answer delivered', async () => cp.webhook.received.find((r) => r.thread === 'ci-thread'), 30_000);
    const probes = cp.llm.requests.filter((r) => lastUserText(r).includes('ci-probe'));
    assert.deepEqual(
      probes.map((r) => /ci-probe-\w+/.exec(lastUserText(r))?.[0]),
      ['ci-probe-good'],
      'one turn, for the well-signed event only',
    );
  });

  it('fires when a memory document with the prefix is imported for the routine’s user', async () => {
    await ok(['routines', 'add', 'inbox', '--on', 'document:inbox:', '--prompt', 'New document:', '--user', 'alice']);
    const nc = await cp.tp.admin();
    const store = (userId: string, key: string) =>
      askConversations(nc, 'document', {
        userId,
        key,
        title: `doc ${key}`,
        content: `content of ${key}`,
        source: 'user',
        origin: undefined,
      });
    await ok(['users', 'add', 'bob']);
    await store('alice', 'notes:doc-probe-a');
    await store('bob', 'inbox:doc-probe-b');
    await store('alice', 'inbox:doc-probe-c');
    await finishedRuns('inbox', 1);
    await cp.tp.until('the document turn', async () => (asked('doc-probe-c').length > 0 ? true : undefined), 30_000);
    assert.equal(asked('doc-probe-a').length, 0, 'another prefix');
    assert.equal(asked('doc-probe-b').length, 0, 'another user');
    assert.equal((await runs.recent('inbox', 10)).length, 1);
  });

  it('a heartbeat stays quiet on HEARTBEAT_OK and delivers once when the model reports something', async () => {
    const nc = await cp.tp.admin();
    await askConversations(nc, 'document', {
      userId: 'alice',
      key: 'checklist',
      title: 'checklist',
      content: 'checklist: backups ran overnight; disk below 90%',
      source: 'user',
      origin: undefined,
    });
    const add = await ok([
      'routines',
      'add',
      'hb',
      '--cron',
      '0 0 1 1 *',
      '--heartbeat',
      '--checklist',
      'checklist',
      '--prompt',
      'Check my things.',
      '--user',
      'alice',
      '--deliver',
      'webhook:hb-thread',
    ]);
    assert.match(add, /heartbeat over checklist/);
    const runOnce = async (n: number): Promise<RoutineRun> => {
      await ok(['routines', 'run-now', 'hb']);
      const rs = await finishedRuns('hb', n);
      return rs[0]!;
    };
    heartbeatAnswer = HEARTBEAT_OK;
    const quiet = await runOnce(1);
    assert.equal(quiet.state, RoutineRunState.ROUTINE_RUN_STATE_OK);
    assert.equal(quiet.outcome, 'quiet');
    const check = lastUserText(asked('This is a heartbeat check')[0]!);
    assert.match(check, /answer exactly HEARTBEAT_OK/);
    // The checklist, read from the user's memory, is given as untrusted data.
    assert.match(check, /<untrusted source="memory" document="checklist">\n[^]*backups ran overnight/);

    heartbeatAnswer = 'hb-alert: the backup did not run';
    const loud = await runOnce(2);
    assert.equal(loud.outcome, 'delivered');
    await cp.tp.until('the alert delivered', async () => cp.webhook.received.find((r) => r.thread === 'hb-thread'), 30_000);
    const sent = cp.webhook.received.filter((r) => r.thread === 'hb-thread');
    assert.deepEqual(
      sent.map((r) => r.text),
      ['hb-alert: the backup did not run'],
      'the quiet run sent nothing, the alert once',
    );
    const list = await ok(['routines', 'list']);
    assert.match(list, /heartbeat checklist=checklist/);
    assert.match(list, /heartbeat: quiet \(HEARTBEAT_OK\)/);
    assert.match(list, /heartbeat: delivered/);
  });
});
