// Discord by the Gateway, end to end without a public URL: the gateway holds a Discord
// Gateway WebSocket through egress (the IDENTIFY token filled by egress in the frame), an
// ordinary channel message from an unknown user gets a pairing notice in that channel, and
// after the operator approves the code the user's messages are answered there through the
// REST API. The bot's own replies, which Discord also dispatches, start no turn.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startChannelPlatform, waitFor, type ChannelPlatform } from '@talon/testkit';

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;

describe('Discord Gateway', () => {
  let cp: ChannelPlatform;
  before(async () => {
    cp = await startChannelPlatform({ discordGateway: true });
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
});
