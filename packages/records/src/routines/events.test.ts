import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MissedRunPolicy, type Routine } from '@talon/proto';
import {
  capPayload,
  checkRoutine,
  eventFires,
  heartbeatDecision,
  HEARTBEAT_OK,
  parseTrigger,
  subjectMatches,
  triggerString,
  webhookEventSubject,
} from './index.ts';

function routine(over: Partial<Routine> = {}): Routine {
  return {
    name: 'deploys',
    cron: '',
    timeZone: 'UTC',
    prompt: 'Summarise the deploy',
    userId: 'alice',
    deliver: 'web',
    missed: MissedRunPolicy.MISSED_RUN_POLICY_SKIP,
    paused: false,
    createdAtMs: 0,
    updatedAtMs: 0,
    activeSinceMs: 0,
    createdBy: 'cli:test',
    trigger: 'subject:talon.events.deploys',
    heartbeat: false,
    checklist: '',
    ...over,
  };
}

describe('routine triggers: --on webhook, subject, document', () => {
  it('parses each kind and writes it back unchanged', () => {
    for (const on of [
      'webhook:ci-done',
      'subject:talon.events.deploys',
      'subject:talon.events.ci.*.done',
      'subject:talon.events.ci.>',
      'document',
      'document:inbox:',
    ]) {
      assert.equal(triggerString(parseTrigger(on)), on);
    }
    assert.deepEqual(parseTrigger(''), { kind: 'cron' });
    assert.deepEqual(parseTrigger('webhook:ci-done'), { kind: 'webhook', name: 'ci-done' });
    assert.deepEqual(parseTrigger('document'), { kind: 'document', prefix: '' });
  });

  it('refuses subjects outside talon.events., Talon’s own event subjects and bad tokens, saying what to do', () => {
    assert.throws(
      () => parseTrigger('subject:talon.inbound.api'),
      /outside talon\.events\.>: routines listen only to subjects under talon\.events\./,
    );
    assert.throws(() => parseTrigger('subject:>'), /outside talon\.events\./);
    assert.throws(() => parseTrigger('subject:talon.events.webhook.x'), /names Talon's own events.*--on webhook:<name>/);
    assert.throws(() => parseTrigger('subject:talon.events.document'), /names Talon's own events/);
    assert.throws(() => parseTrigger('subject:talon.events.>'), /names Talon's own events/);
    assert.throws(() => parseTrigger('subject:talon.events.a..b'), /not a valid subject/);
    assert.throws(() => parseTrigger('subject:talon.events.a.>.b'), /not a valid subject/);
    assert.throws(() => parseTrigger('webhook:Bad Name'), /--on webhook:<name> needs 1-48 characters/);
    assert.throws(() => parseTrigger('document:a b'), /--on document:<prefix> needs/);
    assert.throws(() => parseTrigger('email:x'), /--on must be webhook:<name>, subject:talon\.events\.<…> or document/);
  });

  it('a routine has exactly one trigger kind; a heartbeat is a cron routine with a checklist', () => {
    assert.equal(checkRoutine(routine()).schedule, undefined);
    assert.equal(checkRoutine(routine()).trigger.kind, 'subject');
    assert.throws(() => checkRoutine(routine({ cron: '0 8 * * *' })), /either --cron or --on/);
    assert.throws(() => checkRoutine(routine({ trigger: '' })), /needs a trigger: --cron <expr> or --on <event>/);
    assert.throws(() => checkRoutine(routine({ heartbeat: true, checklist: 'c' })), /--heartbeat runs on a schedule/);
    const hb = routine({ trigger: '', cron: '*/30 * * * *', heartbeat: true, checklist: 'checklist' });
    assert.ok(checkRoutine(hb).schedule);
    assert.throws(() => checkRoutine({ ...hb, checklist: ' ' }), /--heartbeat needs --checklist <document key>/);
    assert.throws(() => checkRoutine({ ...hb, heartbeat: false }), /--checklist is for --heartbeat routines only/);
  });

  it('maps an event to the routines it fires', () => {
    const seq = 7;
    assert.equal(subjectMatches('talon.events.ci.*.done', 'talon.events.ci.web.done'), true);
    assert.equal(subjectMatches('talon.events.ci.*.done', 'talon.events.ci.web.failed'), false);
    assert.equal(subjectMatches('talon.events.ci.>', 'talon.events.ci'), false);
    assert.equal(subjectMatches('talon.events.ci.>', 'talon.events.ci.a.b'), true);
    assert.equal(eventFires(parseTrigger('subject:talon.events.deploys'), 'alice', { subject: 'talon.events.deploys', seq }), true);
    assert.equal(eventFires(parseTrigger('subject:talon.events.deploys'), 'alice', { subject: 'talon.events.deploys.x', seq }), false);
    assert.equal(eventFires(parseTrigger('webhook:ci'), 'alice', { subject: webhookEventSubject('ci'), seq }), true);
    assert.equal(eventFires(parseTrigger('webhook:ci'), 'alice', { subject: webhookEventSubject('cd'), seq }), false);
    const doc = (userId: string, key: string) => ({ subject: 'talon.events.document', seq, document: { userId, key } });
    assert.equal(eventFires(parseTrigger('document:inbox:'), 'alice', doc('alice', 'inbox:1')), true);
    assert.equal(eventFires(parseTrigger('document:inbox:'), 'alice', doc('alice', 'notes:1')), false);
    assert.equal(eventFires(parseTrigger('document:inbox:'), 'alice', doc('bob', 'inbox:1')), false, 'another user’s document');
    assert.equal(eventFires(parseTrigger('document'), 'alice', doc('alice', 'anything')), true);
    assert.equal(eventFires({ kind: 'cron' }, 'alice', { subject: 'talon.events.deploys', seq }), false);
  });

  it('caps an event payload and says so', () => {
    assert.equal(capPayload('short', 10), 'short');
    const cut = capPayload('x'.repeat(25), 10);
    assert.ok(cut.startsWith('x'.repeat(10) + '\n'));
    assert.match(cut, /15 more characters cut/);
  });
});

describe('heartbeat: quiet unless the model reports something', () => {
  it('is quiet only for the sentinel answer', () => {
    assert.equal(heartbeatDecision(HEARTBEAT_OK), 'quiet');
    assert.equal(heartbeatDecision(` ${HEARTBEAT_OK}.\n`), 'quiet');
    assert.equal(heartbeatDecision(`\`${HEARTBEAT_OK}\``), 'quiet');
    assert.equal(heartbeatDecision('The backup failed last night.'), 'deliver');
    assert.equal(heartbeatDecision(`${HEARTBEAT_OK} but the disk is full`), 'deliver');
    assert.equal(heartbeatDecision('heartbeat_ok'), 'deliver');
    assert.equal(heartbeatDecision(''), 'deliver', 'an empty answer is not the sentinel');
  });
});
