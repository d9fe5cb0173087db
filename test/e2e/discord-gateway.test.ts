// Discord by the Gateway, end to end without a public URL: the gateway holds a Discord
// Gateway WebSocket through egress (the IDENTIFY token filled by egress in the frame), an
// ordinary channel message from an unknown user gets a pairing notice in that channel, and
// after the operator approves the code the user's messages are answered there through the
// REST API. The bot's own replies, which Discord also dispatches, start no turn. The session
// is kept in KV talon_channel_state: a gateway killed with SIGKILL (or stopped) RESUMEs it
// when it comes back, so a message sent meanwhile is answered exactly once, and a replayed
// message that was already queued is not a second turn.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS } from '@talon/kit/subjects';
import { startChannelPlatform, waitFor, type ChannelPlatform } from '@talon/testkit';
import { receivedTexts } from '../../packages/testkit/src/fake-llm.ts';
import { decodeSession, discordSessionKey, encodeSession } from '../../services/gateway/src/channels/discord-gateway.ts';

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;

describe('Discord Gateway', () => {
  let cp: ChannelPlatform;
  before(async () => {
    // A short lease: a killed gateway's lease lapses soon (a stopped one gives it up).
    cp = await startChannelPlatform({ discordGateway: true, env: { GATEWAY_CHANNEL_LEASE_TTL_MS: '3000' } });
    assert.equal((await cp.talon(['users', 'add', 'gus'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  it('pairs a sender from an ordinary message and answers in the channel, the token never in the gateway', async () => {
    const gw = cp.discordGateway!;
    await gw.ready(1);
    assert.deepEqual(gw.identifies, [cp.discord.botToken], 'egress filled the IDENTIFY token');
    gw.message({ id: '910000000000000001', channelId: '800000000000000009', authorId: '700000000000000009', content: 'hello' });
    const notice = await waitFor(
      () => cp.discord.messages.find((m) => m.channelId === '800000000000000009' && CODE.test(m.content)),
      60_000,
      'the pairing notice',
    );
    const code = CODE.exec(notice.content)![1]!;
    assert.equal((await cp.talon(['pairing', 'approve', code, '--user', 'gus'])).code, 0);
    gw.message({ id: '910000000000000002', channelId: '800000000000000009', authorId: '700000000000000009', content: 'roll a die' });
    await waitFor(() => cp.discord.messages.find((m) => m.content === 'echo: roll a die'), 60_000, 'the answer');
    // Discord dispatches the bot's own message too: it is not a turn.
    gw.message({ id: '910000000000000003', channelId: '800000000000000009', authorId: gw.botId, content: 'echo: roll a die' });
    gw.message({ id: '910000000000000004', channelId: '800000000000000009', authorId: '700000000000000009', content: 'and again' });
    await waitFor(() => cp.discord.messages.find((m) => m.content === 'echo: and again'), 60_000, 'the second answer');
    assert.equal(cp.discord.messages.filter((m) => m.content === 'echo: echo: roll a die').length, 0);
    assert.ok(!cp.tp.log('gateway').includes(cp.discord.botToken), 'the token is not in the gateway log');
  });

  it('keeps the session across a SIGKILL and a stop: what was sent meanwhile is answered once, a replay is no second turn', async () => {
    const gw = cp.discordGateway!;
    const channelId = '800000000000000009';
    const key = discordSessionKey('discord_gateway_token');
    const state = await new Kvm(await cp.tp.admin()).open(KV_BUCKETS.channelState);
    const stored = async () => {
      const e = await state.get(key);
      return e?.operation === 'PUT' ? decodeSession(e.value, e.created.getTime(), Date.now()) : undefined;
    };
    const answers = (text: string) => cp.discord.messages.filter((m) => m.content === `echo: ${text}`).length;
    const turns = (text: string) =>
      cp.llm.requests.filter(
        (r) =>
          receivedTexts(r)
            .filter((m) => m.role === 'user')
            .at(-1)?.text === text,
      ).length;
    const send = (id: string, content: string) => gw.message({ id, channelId, authorId: '700000000000000009', content });

    send('910000000000000010', 'queued before the crash');
    await waitFor(() => answers('queued before the crash') === 1 || undefined, 60_000, 'the answer before the crash');
    // Every dispatch so far is queued and its sequence stored.
    const before = await waitFor(
      async () => {
        const s = await stored();
        return s && s.sessionId === gw.sessionId && s.seq === gw.seq ? s : undefined;
      },
      30_000,
      'the session stored with the last sequence',
    );
    await cp.tp.platform.stopService('gateway', { kill: true });
    // The crash came after the last message was queued but, as far as the store knows, before its
    // sequence was written: the resume replays it.
    await state.put(key, encodeSession({ ...before, seq: before.seq - 1 }));
    send('910000000000000011', 'sent while the gateway was down');
    const identifies = gw.identifies.length;
    const readies = gw.readies;
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
    await gw.ready(readies + 1);
    assert.equal(gw.identifies.length, identifies, 'resumed, not identified afresh');
    assert.deepEqual(gw.resumes.at(-1), { token: cp.discord.botToken, sessionId: before.sessionId, seq: before.seq - 1 });
    await waitFor(() => answers('sent while the gateway was down') === 1 || undefined, 60_000, 'the answer after the restart');
    assert.equal(turns('sent while the gateway was down'), 1);
    assert.equal(turns('queued before the crash'), 1, 'the replayed message was dropped by its id');
    assert.equal(answers('queued before the crash'), 1);

    // A graceful stop gives the lease up and writes the session; the next start resumes it.
    await cp.tp.platform.stopService('gateway');
    send('910000000000000012', 'sent while the gateway was stopped');
    const readies2 = gw.readies;
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
    await gw.ready(readies2 + 1);
    await waitFor(() => answers('sent while the gateway was stopped') === 1 || undefined, 60_000, 'the answer after the stop');
    assert.equal(gw.identifies.length, identifies, 'resumed again');
    assert.equal(turns('sent while the gateway was stopped'), 1);
    assert.equal(answers('sent while the gateway was down'), 1);
    assert.ok(!cp.tp.log('gateway').includes(cp.discord.botToken), 'the token is not in the gateway log');
  });
});
