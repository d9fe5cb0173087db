// Self-healing as under `talon up`: nats-server and the embedded database are killed
// with SIGKILL (a crash, not a stop) under a running platform; the platform starts them
// again, says so, and the services reconnect on their own — a chat turn is answered
// and recorded afterwards without restarting anything else.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';

describe('talon up restarts nats-server and the embedded database', () => {
  let tp: TestPlatform;
  let token: string;
  const progress: string[] = [];
  before(async () => {
    tp = await startTestPlatform({ autoRestart: true, onProgress: (m) => progress.push(m) });
    token = await tp.token('healer');
  });
  after(async () => {
    await tp?.stop();
  });

  /** One turn, retried while the platform is still coming back (a 503 says so); then its record is read. */
  async function turnRecorded(conversation: string, text: string): Promise<void> {
    await waitFor(
      async () => {
        const r = await tp.chat(token, { messages: [{ role: 'user', content: text }] }, { 'x-talon-conversation': conversation });
        if (r.status === 200) {
          assert.equal(r.json.choices[0].message.content, `echo: ${text}`);
          return true;
        }
        assert.ok([500, 502, 503, 504].includes(r.status), `unexpected ${r.status}: ${r.text}`);
        return undefined;
      },
      90_000,
      `a turn answered in ${conversation}`,
    );
    await waitFor(
      async () => {
        const res = await fetch(`${tp.gatewayUrl}/v1/conversations/${conversation}/messages`, {
          headers: { authorization: `Bearer ${token}` },
        });
        if (res.status !== 200) return undefined;
        const body = (await res.json()) as { messages: Array<{ role: string; content: string }> };
        const answers = body.messages.filter((m) => m.role === 'assistant' && m.content === `echo: ${text}`);
        return answers.length >= 1 ? answers : undefined;
      },
      60_000,
      `the answer recorded in ${conversation}`,
    );
  }

  const restarted = (name: string) => progress.some((m) => m === `${name} restarted`);

  it('answers before any fault', async () => {
    await turnRecorded('heal-0', 'before any fault');
  });

  it('brings nats-server back after SIGKILL and the turn after it is answered', async () => {
    const nats = tp.platform.process('nats');
    assert.ok(nats?.running);
    nats.kill('SIGKILL');
    await waitFor(() => (restarted('nats') ? true : undefined), 60_000, 'the platform to restart nats-server');
    assert.ok(
      progress.some((m) => /^nats exited unexpectedly; restarting in \d+ ms/.test(m)),
      'the output says what it restarted',
    );
    await turnRecorded('heal-1', 'after nats-server came back');
  });

  it('brings the embedded database back after SIGKILL and the turn after it is recorded', async (t) => {
    if (tp.database !== 'embedded') {
      t.skip('the PostgreSQL server is not a process of the platform');
      return;
    }
    const db = tp.platform.process('pglite');
    assert.ok(db?.running);
    db.kill('SIGKILL');
    await waitFor(() => (restarted('pglite') ? true : undefined), 60_000, 'the platform to restart the embedded database');
    await turnRecorded('heal-2', 'after the database came back');
  });
});
