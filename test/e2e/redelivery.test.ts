// kill -9 of the orchestrator after it received a message and before it replied:
// JetStream redelivers the message to the restarted orchestrator and the client
// gets exactly one answer; memory records the turn exactly once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { OutboundMessage } from '@talon/proto';
import { SUBJECTS } from '@talon/kit/subjects';
import { startTestPlatform, type TestPlatform, waitFor } from '@talon/testkit';

describe('orchestrator crash mid-turn', () => {
  let tp: TestPlatform;
  before(async () => {
    // The first LLM call hangs forever: the orchestrator has the message but no reply.
    tp = await startTestPlatform({ llm: { hang: (_req, i) => i === 0, reply: () => 'answer after crash' } });
  });
  after(async () => {
    await tp?.stop();
  });

  it('redelivers after kill -9 and answers exactly once', async () => {
    const token = await tp.token('bob');
    // API replies go by core NATS: count every one published for this conversation.
    const admin = await tp.admin();
    let replies = 0;
    const sub = admin.subscribe(SUBJECTS.apiReply('*'), {
      callback: (_e, m) => void (OutboundMessage.decode(m.data).conversation?.threadId === 'crash-test' && (replies += 1)),
    });
    await admin.flush();
    const pending = tp.chat(token, { messages: [{ role: 'user', content: 'survive a crash' }] }, { 'x-talon-conversation': 'crash-test' });
    await waitFor(() => tp.llm!.requests.length === 1, 15_000, 'the orchestrator to call the LLM');
    const victim = tp.platform.process('orchestrator')!;
    await tp.platform.stopService('orchestrator', { kill: true });
    assert.equal((await victim.exited).signal, 'SIGKILL');
    tp.platform.startService('orchestrator');
    await tp.platform.waitHealthy(['orchestrator']);

    const res = await pending;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'answer after crash');
    assert.equal(tp.llm!.requests.length, 2, 'the LLM was called once per delivery');

    // Exactly one reply for this turn was published (the killed delivery never answered).
    await admin.flush();
    sub.unsubscribe();
    assert.equal(replies, 1);

    // Memory holds the user turn and the assistant turn once each. The answer is
    // recorded right after the reply is published (and before the message is
    // acknowledged), so it may land a moment after the client has its response.
    const db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
    try {
      const count = async () =>
        (
          await db.query(
            `select h.role, count(*)::int as n from memory.conversation_history h join memory.conversations c on c.id = h.conversation_id
              where c.user_id = 'bob' and c.thread_id = 'crash-test' group by h.role order by h.role`,
          )
        ).rows;
      let rows = await count();
      for (const end = Date.now() + 30_000; rows.length < 2 && Date.now() < end;) {
        await new Promise((r) => setTimeout(r, 100));
        rows = await count();
      }
      await new Promise((r) => setTimeout(r, 500));
      rows = await count();
      assert.deepEqual(rows, [
        { role: 'assistant', n: 1 },
        { role: 'user', n: 1 },
      ]);
    } finally {
      await db.end();
    }
  });
});
