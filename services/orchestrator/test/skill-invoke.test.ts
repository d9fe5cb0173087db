// The orchestrator's skill client against a real nats-server, with a stand-in node
// answering on the sandbox's queue group (the sandbox's own suites test real nodes;
// the e2e suite runs the client against one): the invocation it sends, one retry
// of busy/unavailable, no node at all, and a node that never answers.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SKILL_HOST_WAIT_MS } from '@talon/kit/contracts';
import { connectNats, type NatsConnection } from '@talon/kit/nats';
import { createLogger } from '@talon/kit/log';
import { SANDBOX_QUEUE } from '@talon/kit/subjects';
import { SkillInvocation, SkillResult } from '@talon/proto';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';
import { SkillInvoker, type SkillCall } from '../src/skills/invoke.ts';

const log = createLogger({ service: 'test', level: 'silent' });

describe('skill invoker over NATS', () => {
  let tp: TestPlatform;
  let nc: NatsConnection;

  const call = (skill: string, over: Partial<SkillCall> = {}): SkillCall => ({
    invocationId: 'in-1:0',
    skill,
    version: '1.2.3',
    inputJson: '{"a":1}',
    userId: 'alice',
    userApproved: false,
    timeoutMs: 500,
    deadline: Date.now() + 10_000,
    ...over,
  });

  /** A stand-in node: answers each invocation with what `answer` returns (undefined: stays silent). */
  const node = async (skill: string, answer: (inv: SkillInvocation, n: number) => Partial<SkillResult> | undefined) => {
    const admin = await tp.admin();
    const seen: SkillInvocation[] = [];
    const sub = admin.subscribe(`talon.skill.invoke.${skill}`, {
      queue: SANDBOX_QUEUE,
      callback: (_e, m) => {
        const inv = SkillInvocation.decode(m.data);
        seen.push(inv);
        const r = answer(inv, seen.length);
        if (r) m.respond(SkillResult.encode(SkillResult.fromPartial({ invocationId: inv.invocationId, ...r })).finish());
      },
    });
    await admin.flush();
    return { seen, stop: () => sub.unsubscribe() };
  };

  before(async () => {
    tp = await startTestPlatform({ services: [], llm: false });
    nc = await connectNats({ servers: tp.platform.natsUrl, user: 'orchestrator', seedFile: join(tp.home, 'nats', 'orchestrator.nk'), log });
  });
  after(async () => {
    await nc?.close();
    await tp?.stop();
  });

  it('sends the pinned version, the input, the user and a deadline, and returns the output', async () => {
    const n = await node('echo', (inv) => ({ output: `got ${inv.inputJson}`, version: inv.version }));
    const t0 = Date.now();
    const r = await new SkillInvoker(nc).invoke(call('echo', { userApproved: true }));
    n.stop();
    assert.equal(r.output, 'got {"a":1}');
    assert.equal(r.error, undefined);
    const inv = n.seen[0]!;
    assert.deepEqual(
      { skill: inv.skill, version: inv.version, user: inv.userId, approved: inv.userApproved, id: inv.invocationId },
      { skill: 'echo', version: '1.2.3', user: 'alice', approved: true, id: 'in-1:0' },
    );
    assert.ok(inv.deadlineMs > t0 && inv.deadlineMs <= t0 + 500 + SKILL_HOST_WAIT_MS + 1000, `deadline ${inv.deadlineMs - t0} ms ahead`);
  });

  it('retries busy once, then gives up with the error', async () => {
    const n = await node('busy', (_inv, i) =>
      i === 1 ? { error: { code: 'busy', message: 'all hosts busy' } } : { output: 'second try' },
    );
    const r = await new SkillInvoker(nc, { retryDelayMs: 50 }).invoke(call('busy'));
    assert.equal(r.output, 'second try');
    assert.equal(n.seen.length, 2);
    n.stop();
    const always = await node('busy2', () => ({ error: { code: 'busy', message: 'all hosts busy' } }));
    const r2 = await new SkillInvoker(nc, { retryDelayMs: 50 }).invoke(call('busy2'));
    assert.equal(r2.error?.code, 'busy');
    assert.equal(always.seen.length, 2, 'one retry only');
    always.stop();
  });

  it('does not retry other errors', async () => {
    const n = await node('trap', () => ({ error: { code: 'trap', message: 'unreachable' } }));
    const r = await new SkillInvoker(nc, { retryDelayMs: 50 }).invoke(call('trap'));
    assert.equal(r.error?.code, 'trap');
    assert.equal(n.seen.length, 1);
    n.stop();
  });

  it('reports no node as unavailable and a silent node as a timeout', async () => {
    const none = await new SkillInvoker(nc, { retryDelayMs: 50 }).invoke(call('nobody-home'));
    assert.equal(none.error?.code, 'unavailable');
    assert.match(none.error!.message, /no sandbox node is running/);
    const n = await node('silent', () => undefined);
    const t0 = Date.now();
    const r = await new SkillInvoker(nc).invoke(call('silent', { timeoutMs: 200 }));
    assert.equal(r.error?.code, 'timeout');
    const waited = Date.now() - t0;
    // A silent node is waited for as long as a cold plugin host would be: timeout, host wait, slack.
    assert.ok(waited >= 200 + SKILL_HOST_WAIT_MS, `gave up early (${waited} ms)`);
    assert.ok(waited < 200 + SKILL_HOST_WAIT_MS + 1000 + 1500, `gave up after the skill timeout, host wait and slack (${waited} ms)`);
    n.stop();
  });
});
