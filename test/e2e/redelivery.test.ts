// The turn under faults, with the real services:
// - kill -9 of the orchestrator while the model is still answering: JetStream redelivers
//   the message within about the (short) ack wait to the restarted orchestrator, and the
//   client gets exactly one answer; memory records the turn exactly once.
// - memory down after the model answered: the client still gets the answer, the
//   orchestrator is killed and restarted while memory is still down, and once memory is
//   back the answer is recorded — exactly once, with exactly one model call (the stored
//   answer in talon_turns is finished, never recomputed).
// - a turn that fails for good is recorded with a marker of the error the user saw.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Kvm } from '@nats-io/kv';
import { OutboundMessage, ParkedTurn } from '@talon/proto';
import { KV_BUCKETS, SUBJECTS } from '@talon/kit/subjects';
import { startTestPlatform, type TestPlatform, waitFor } from '@talon/testkit';
import { storedStatus, turnKey } from '../../services/orchestrator/src/turn-state.ts';

/** The production default: a dead orchestrator's turn comes back after this. */
const ACK_WAIT_MS = 5000;

describe('orchestrator crash mid-turn', () => {
  let tp: TestPlatform;
  let db: pg.Client;
  before(async () => {
    tp = await startTestPlatform({
      env: { ORCHESTRATOR_ACK_WAIT_MS: String(ACK_WAIT_MS), ORCHESTRATOR_TURN_SWEEP_MS: '500' },
    });
    db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
  });
  after(async () => {
    await db?.end();
    await tp?.stop();
  });

  /** Rows per role in memory for one of bob's conversations. */
  const rows = async (thread: string) =>
    (
      await db.query(
        `select h.role, count(*)::int as n from memory.conversation_history h join memory.conversations c on c.id = h.conversation_id
          where c.user_id = 'bob' and c.thread_id = $1 group by h.role order by h.role`,
        [thread],
      )
    ).rows as Array<{ role: string; n: number }>;

  /** Counts every API reply published for one conversation (core NATS: each publish is seen). */
  async function countReplies(thread: string): Promise<{ replies: OutboundMessage[]; stop: () => Promise<void> }> {
    const admin = await tp.admin();
    const replies: OutboundMessage[] = [];
    const sub = admin.subscribe(SUBJECTS.apiReply('*'), {
      callback: (_e, m) => {
        const r = OutboundMessage.decode(m.data);
        if (r.conversation?.threadId === thread) replies.push(r);
      },
    });
    await admin.flush();
    return {
      replies,
      stop: async () => {
        await admin.flush();
        sub.unsubscribe();
      },
    };
  }

  it('redelivers after kill -9 within about the ack wait and answers exactly once', async () => {
    const llm = tp.llm!;
    const base = llm.requests.length;
    // The first LLM call hangs forever: the orchestrator has the message but no answer.
    llm.behaviour = { hang: (_req, i) => i === base, reply: () => 'answer after crash' };
    const token = await tp.token('bob');
    const seen = await countReplies('crash-test');
    const pending = tp.chat(token, { messages: [{ role: 'user', content: 'survive a crash' }] }, { 'x-talon-conversation': 'crash-test' });
    await waitFor(() => llm.requests.length === base + 1, 15_000, 'the orchestrator to call the LLM');
    const victim = tp.platform.process('orchestrator')!;
    await tp.platform.stopService('orchestrator', { kill: true });
    assert.equal((await victim.exited).signal, 'SIGKILL');
    tp.platform.startService('orchestrator');
    await tp.platform.waitHealthy(['orchestrator']);
    const upAt = Date.now();

    const res = await pending;
    const waited = Date.now() - upAt;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'answer after crash');
    // Redelivered once the dead process's ack wait ran out, not after 30 s.
    assert.ok(waited < ACK_WAIT_MS + 4000, `answered ${waited} ms after the restart (ack wait ${ACK_WAIT_MS} ms)`);
    assert.equal(llm.requests.length, base + 2, 'no answer was obtained before the crash: the LLM was called once per delivery');

    // Exactly one reply for this turn was published (the killed delivery never answered).
    await seen.stop();
    assert.equal(seen.replies.length, 1);

    // Memory holds the user turn and the assistant turn once each; the answer is recorded
    // right after the reply is published, so it may land a moment after the response.
    await waitFor(async () => (await rows('crash-test')).length === 2, 30_000, 'the answer to be recorded');
    assert.deepEqual(await rows('crash-test'), [
      { role: 'assistant', n: 1 },
      { role: 'user', n: 1 },
    ]);
  });

  it('records an answer obtained while memory was down once memory is back, across a kill -9, with one LLM call', async () => {
    const llm = tp.llm!;
    const base = llm.requests.length;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    // The model's answer is held until memory is gone (the user turn was stored before the call).
    llm.behaviour = { hold: (_req, i) => (i === base ? released : undefined), reply: () => 'answered once' };
    const token = await tp.token('bob');
    const seen = await countReplies('memory-down');
    const pending = tp.chat(token, { messages: [{ role: 'user', content: 'remember me' }] }, { 'x-talon-conversation': 'memory-down' });
    await waitFor(() => llm.requests.length === base + 1, 15_000, 'the orchestrator to call the LLM');
    await tp.platform.stopService('memory', { kill: true });
    release();

    // The user is answered although memory cannot record it.
    const res = await pending;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'answered once');
    await waitFor(() => seen.replies.length === 1, 5000, 'the reply to be seen');
    const key = turnKey(seen.replies[0]!.inboundId);

    // The answer is in talon_turns, marked delivered, with its records.
    const kv = await new Kvm(await tp.admin()).open(KV_BUCKETS.turns);
    const stored = async () => {
      const e = await kv.get(key);
      return e && e.operation === 'PUT' ? ParkedTurn.decode(e.value) : undefined;
    };
    await waitFor(async () => (await stored())?.delivered === true, 10_000, 'the stored answer to be marked delivered');
    assert.ok((await stored())!.records.some((r) => r.role === 'assistant' && r.content === 'answered once'));

    // kill -9 of the orchestrator before the answer is recorded, restarted while memory is still down.
    await tp.platform.stopService('orchestrator', { kill: true });
    tp.platform.startService('orchestrator');
    await tp.platform.waitHealthy(['orchestrator']);
    // The restarted orchestrator tries, fails and leaves it in talon_turns (released for the next sweep).
    await waitFor(
      async () => {
        const t = await stored();
        return t !== undefined && storedStatus(t) === 'delivered' && t.owner === '' && t.claims >= 2;
      },
      30_000,
      'the restarted orchestrator to try the record and release it',
    );
    assert.deepEqual(await rows('memory-down'), [{ role: 'user', n: 1 }], 'nothing recorded while memory is down');

    tp.platform.startService('memory');
    await tp.platform.waitHealthy(['memory']);
    await waitFor(async () => (await rows('memory-down')).length === 2, 60_000, 'the answer to be recorded once memory is back');
    await waitFor(
      async () => {
        const t = await stored();
        return t !== undefined && storedStatus(t) === 'done';
      },
      10_000,
      'the stored turn to be marked done',
    );
    assert.deepEqual(await rows('memory-down'), [
      { role: 'assistant', n: 1 },
      { role: 'user', n: 1 },
    ]);
    const answer = await db.query(
      `select h.content from memory.conversation_history h join memory.conversations c on c.id = h.conversation_id
        where c.user_id = 'bob' and c.thread_id = 'memory-down' and h.role = 'assistant'`,
    );
    assert.equal(answer.rows[0].content, 'answered once');
    assert.equal(llm.requests.length, base + 1, 'the answer was obtained once: the model was called once');
    await seen.stop();
    assert.equal(seen.replies.length, 1, 'the user got the answer once');
  });

  it('records a turn that failed for good, so the conversation keeps no unanswered message', async () => {
    const llm = tp.llm!;
    // A 400 is not retried: the turn ends with an error reply.
    llm.behaviour = { status: () => 400 };
    const token = await tp.token('bob');
    const res = await tp.chat(
      token,
      { messages: [{ role: 'user', content: 'this will fail' }] },
      { 'x-talon-conversation': 'failed-turn' },
    );
    assert.notEqual(res.status, 200, res.text);
    llm.behaviour = {};
    await waitFor(async () => (await rows('failed-turn')).length === 2, 15_000, 'the failed turn to be recorded');
    const r = await db.query(
      `select h.role, h.source, h.content from memory.conversation_history h join memory.conversations c on c.id = h.conversation_id
        where c.user_id = 'bob' and c.thread_id = 'failed-turn' order by h.role`,
    );
    assert.equal(r.rows.length, 2);
    assert.equal(r.rows[0].role, 'assistant');
    assert.equal(r.rows[0].source, 'system', "not the model's words");
    assert.match(r.rows[0].content, /^\[no answer: this turn failed \(/);
    assert.equal(r.rows[1].role, 'user');
  });
});
