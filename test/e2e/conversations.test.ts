// Users see and delete their own conversations and memory, end to end: the gateway
// asks an orchestrator over NATS, the orchestrator asks memory. Two users with
// conversations; each lists and reads only their own, newest first; a deleted
// conversation is gone from the list, its messages answer 404, and a later turn of
// the same user no longer recalls it (checked in the context the fake LLM
// receives); another user's conversation answers 404 to read and delete alike;
// DELETE /v1/memory empties one user's memory and leaves the other's; an operator
// lists and forgets with `talon memory`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { receivedTexts, startTestPlatform, type RecordedLlmRequest, type TestPlatform } from '@talon/testkit';

const ROOT = resolve(import.meta.dirname, '..', '..');

interface Listed {
  id: string;
  channel: string;
  title: string;
  createdAtMs: number;
  lastActivityAtMs: number;
  turns: number;
}

/** The user-role message carrying recalled memories, if any. */
function memoryMessage(req: RecordedLlmRequest): string | undefined {
  return receivedTexts(req).find((m) => m.role === 'user' && m.text.includes('<untrusted source="memory"'))?.text;
}

describe('conversations API and talon memory, end to end', () => {
  let tp: TestPlatform;
  let alice: string;
  let bob: string;
  let carol: string;

  const api = async (token: string | undefined, method: string, path: string) => {
    const res = await fetch(`${tp.gatewayUrl}${path}`, {
      method,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined, text };
  };
  const say = async (token: string, conversation: string, content: string) => {
    const before = tp.llm!.requests.length;
    const res = await tp.chat(token, { messages: [{ role: 'user', content }] }, { 'x-talon-conversation': conversation });
    assert.equal(res.status, 200, res.text);
    return tp.llm!.requests.slice(before);
  };
  const list = async (token: string, query = ''): Promise<{ conversations: Listed[]; nextBefore: string | null }> => {
    const r = await api(token, 'GET', `/v1/conversations${query}`);
    assert.equal(r.status, 200, r.text);
    return r.json;
  };
  /** Each turn's answer is recorded just after the reply is sent: wait until the list shows it. */
  const settled = async (token: string, want: Record<string, number>) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const got = Object.fromEntries((await list(token)).conversations.map((c) => [`${c.channel}/${c.id}`, c.turns]));
      if (Object.entries(want).every(([k, n]) => got[k] === n)) return;
      if (Date.now() > deadline) assert.fail(`conversations never reached ${JSON.stringify(want)}: ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const talon = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((done) => {
      const p = spawn(process.execPath, [join(ROOT, 'packages', 'cli', 'src', 'bin.ts'), ...args], {
        cwd: tp.home,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, TALON_HOME: tp.home, TALON_NATS_URL: tp.platform.natsUrl },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => done({ code: code ?? 1, stdout, stderr }));
    });

  before(async () => {
    // Skills play no part here: the platform runs without the sandbox.
    tp = await startTestPlatform({ services: ['vault', 'egress', 'memory', 'orchestrator', 'gateway'] });
    alice = await tp.token('alice');
    bob = await tp.token('bob');
    carol = await tp.token('carol');
    await say(alice, 'pets', 'My cat is called Pixelbrook and she sleeps on the radiator.');
    await say(alice, 'trip', 'Plan a night train to Kiruna in March, with a window seat facing forward if possible please.');
    await say(alice, 'work', 'The quarterly report is due on Friday.');
    await say(bob, 'pets', 'My dog Rufus chews the marimba.');
    await say(bob, 'bobs-only', 'Bob keeps his bike in the blue shed.');
    await settled(alice, { 'api/pets': 2, 'api/trip': 2, 'api/work': 2 });
    await settled(bob, { 'api/pets': 2, 'api/bobs-only': 2 });
  });
  after(async () => {
    await tp?.stop();
  });

  it('lists only the caller’s conversations, newest activity first, with titles', async () => {
    const a = await list(alice);
    assert.deepEqual(
      a.conversations.map((c) => [c.channel, c.id, c.turns]),
      [
        ['api', 'work', 2],
        ['api', 'trip', 2],
        ['api', 'pets', 2],
      ],
    );
    assert.equal(a.nextBefore, null);
    assert.equal(a.conversations[2]!.title, 'My cat is called Pixelbrook and she sleeps on the radiator.');
    assert.equal(Array.from(a.conversations[1]!.title).length, 80);
    assert.ok(a.conversations[0]!.lastActivityAtMs >= a.conversations[1]!.lastActivityAtMs);
    assert.ok(a.conversations.every((c) => c.createdAtMs > 0 && c.lastActivityAtMs >= c.createdAtMs));
    assert.ok(!JSON.stringify(a).includes('Rufus') && !JSON.stringify(a).includes('bobs-only'), "bob's conversations are not alice's");
    assert.deepEqual((await list(bob)).conversations.map((c) => c.id).sort(), ['bobs-only', 'pets']);
    // Pages.
    const p1 = await list(alice, '?limit=2');
    assert.equal(p1.conversations.length, 2);
    assert.ok(p1.nextBefore);
    const p2 = await list(alice, `?limit=2&before=${p1.nextBefore}`);
    assert.deepEqual(
      p2.conversations.map((c) => c.id),
      ['pets'],
    );
    assert.equal(p2.nextBefore, null);
    assert.deepEqual((await list(alice, '?channel=telegram')).conversations, []);
    // No token, no list; a user id in the query changes nothing.
    assert.equal((await api(undefined, 'GET', '/v1/conversations')).status, 401);
    assert.deepEqual(
      (await list(alice, '?user=bob&user_id=bob')).conversations.map((c) => c.id),
      ['work', 'trip', 'pets'],
    );
  });

  it('reads the messages of a conversation, user and assistant turns in order', async () => {
    const r = await api(alice, 'GET', '/v1/conversations/pets/messages');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.conversation, { id: 'pets', channel: 'api' });
    assert.deepEqual(
      r.json.messages.map((m: { role: string; content: string }) => [m.role, m.content]),
      [
        ['user', 'My cat is called Pixelbrook and she sleeps on the radiator.'],
        ['assistant', 'echo: My cat is called Pixelbrook and she sleeps on the radiator.'],
      ],
    );
    assert.equal(r.json.nextBefore, null);
    const bobs = await api(bob, 'GET', '/v1/conversations/pets/messages');
    assert.match(bobs.json.messages[0].content, /Rufus/, "bob's conversation under the same id is bob's");
  });

  it('answers 404 for unknown conversations and for another user’s, to read and delete alike', async () => {
    for (const [method, path] of [
      ['GET', '/v1/conversations/bobs-only/messages'],
      ['DELETE', '/v1/conversations/bobs-only'],
      ['GET', '/v1/conversations/never-was/messages'],
      ['DELETE', '/v1/conversations/never-was'],
      ['GET', '/v1/conversations/pets/messages?channel=telegram'],
    ] as const) {
      const r = await api(alice, method, path);
      assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
      assert.equal(r.json.error.code, 'not_found');
      assert.ok(!/Rufus|shed|marimba/i.test(r.text), `the answer reveals nothing of bob's: ${r.text}`);
    }
    // The refusals above are indistinguishable, and bob's conversation is intact.
    const a = await api(alice, 'GET', '/v1/conversations/bobs-only/messages');
    const b = await api(alice, 'GET', '/v1/conversations/nobody-has-this/messages');
    assert.equal(a.json.error.message.replace('bobs-only', 'X'), b.json.error.message.replace('nobody-has-this', 'X'));
    assert.equal((await api(bob, 'GET', '/v1/conversations/bobs-only/messages')).json.messages.length, 2);
    assert.equal((await api(alice, 'GET', '/v1/conversations/%20pets/messages')).status, 400);
    assert.equal((await api(alice, 'POST', '/v1/conversations/pets')).status, 405);
  });

  it('deletes a conversation: gone from the list, its messages 404, never recalled again', async () => {
    // Recall finds the fact before deletion (so the check after it is not vacuous).
    const probe = await say(alice, 'probe-1', 'What is my cat called?');
    assert.match(memoryMessage(probe.at(-1)!) ?? '', /Pixelbrook and she sleeps on the radiator/);

    const del = await api(alice, 'DELETE', '/v1/conversations/pets');
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json.deleted, { id: 'pets', channel: 'api', turns: 2, chunks: del.json.deleted.chunks, documents: 0 });
    assert.ok(del.json.deleted.chunks >= 2);
    assert.ok(!(await list(alice)).conversations.some((c) => c.id === 'pets'));
    assert.equal((await api(alice, 'GET', '/v1/conversations/pets/messages')).status, 404);
    assert.equal((await api(alice, 'DELETE', '/v1/conversations/pets')).status, 404);

    const later = await say(alice, 'probe-2', 'What is my cat called? Pixelbrook? The radiator?');
    const req = later.at(-1)!;
    const context = receivedTexts(req).slice(0, -1);
    assert.ok(
      !context.some((m) => /Pixelbrook|sleeps on the radiator/.test(m.text)),
      `the deleted conversation reached the model:\n${context.map((m) => m.text).join('\n')}`,
    );
    // Bob's conversation under the same id is untouched.
    const bobs = await api(bob, 'GET', '/v1/conversations/pets/messages');
    assert.equal(bobs.status, 200);
    assert.match(bobs.json.messages[0].content, /Rufus/);
  });

  it('DELETE /v1/memory empties the caller’s memory and leaves other users’', async () => {
    await settled(alice, { 'api/probe-1': 2, 'api/probe-2': 2 });
    const bobBefore = await list(bob);
    const r = await api(alice, 'DELETE', '/v1/memory');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.deleted.conversations, 4, r.text);
    assert.equal(r.json.deleted.turns, 8);
    assert.deepEqual((await list(alice)).conversations, []);
    assert.deepEqual(await list(bob), bobBefore);
    const fresh = await say(alice, 'after', 'Remind me: the quarterly report, Kiruna?');
    assert.equal(memoryMessage(fresh.at(-1)!), undefined, 'nothing left to recall');
    assert.equal((await api(alice, 'GET', '/v1/memory')).status, 405);
  });

  it('talon memory list and forget work for an operator', async () => {
    await say(carol, 'garden', 'The tomatoes grow by the south fence.');
    await say(carol, 'chores', 'Water the fern on Tuesdays.');
    await settled(carol, { 'api/garden': 2, 'api/chores': 2 });

    const listed = await talon(['memory', 'list', '--user', 'carol']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /CHANNEL\s+CONVERSATION\s+LAST ACTIVITY \(UTC\)\s+MESSAGES\s+TITLE/);
    assert.match(listed.stdout, /api\s+chores\s+\S+ \S+\s+2\s+Water the fern on Tuesdays\./);
    assert.match(listed.stdout, /api\s+garden\s/);
    assert.ok(listed.stdout.indexOf('chores') < listed.stdout.indexOf('garden'), 'newest first');

    const msgs = await talon(['memory', 'list', '--user', 'carol', '--conversation', 'garden']);
    assert.equal(msgs.code, 0, msgs.stderr);
    assert.match(msgs.stdout, /user\s+The tomatoes grow by the south fence\.\n.*assistant\s+echo: The tomatoes/);

    const unconfirmed = await talon(['memory', 'forget', '--user', 'carol', '--conversation', 'garden']);
    assert.equal(unconfirmed.code, 1);
    assert.match(unconfirmed.stderr, /nothing deleted: confirm with --yes/);
    assert.equal((await list(carol)).conversations.length, 2, 'nothing was deleted without confirmation');

    const missing = await talon(['memory', 'forget', '--user', 'carol', '--conversation', 'nope', '--yes']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /user carol has no conversation api\/nope/);
    assert.equal((await talon(['memory', 'forget', '--user', 'carol', '--yes'])).code, 1, '--conversation or --all is required');

    const forgot = await talon(['memory', 'forget', '--user', 'carol', '--conversation', 'garden', '--yes']);
    assert.equal(forgot.code, 0, forgot.stderr);
    assert.match(
      forgot.stdout,
      /Deleted conversation api\/garden of carol: 2 turn\(s\), 0 memory document\(s\), \d+ searchable chunk\(s\)\./,
    );
    assert.deepEqual(
      (await list(carol)).conversations.map((c) => c.id),
      ['chores'],
    );
    assert.equal((await api(carol, 'GET', '/v1/conversations/garden/messages')).status, 404);

    const all = await talon(['memory', 'forget', '--user', 'carol', '--all', '--yes']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /Forgot everything Talon remembered of carol: 1 conversation\(s\), 2 turn\(s\)/);
    assert.deepEqual((await list(carol)).conversations, []);
    assert.match((await talon(['memory', 'list', '--user', 'carol'])).stdout, /Talon remembers no conversations of carol\./);
    assert.equal((await list(bob)).conversations.length, 2, "bob's memory is untouched");
  });

  it('logs what was asked, never what the conversations say', () => {
    for (const service of ['gateway', 'orchestrator', 'memory']) {
      const log = tp.log(service);
      for (const secretish of ['Pixelbrook', 'tomatoes grow', 'Rufus', 'quarterly report'])
        assert.ok(!log.includes(secretish), `${service}'s log holds conversation text (${secretish})`);
    }
    assert.match(tp.log('orchestrator'), /"op":"delete".*"outcome":"ok"/);
  });
});
