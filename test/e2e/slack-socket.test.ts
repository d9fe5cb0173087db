// Slack by Socket Mode, end to end without a public URL: the gateway opens
// apps.connections.open through egress (the app-level token filled by egress) and the
// WebSocket it names, also through egress; a message from an unknown user gets a pairing
// notice, and after the operator approves it the user's messages are answered in the
// thread; every envelope is acknowledged once queued, and a `disconnect` envelope makes the
// gateway open a new connection and carry on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startChannelPlatform, waitFor, type ChannelPlatform } from '@talon/testkit';

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;

describe('Slack Socket Mode', () => {
  let cp: ChannelPlatform;
  before(async () => {
    cp = await startChannelPlatform({ slackSocket: true });
    assert.equal((await cp.talon(['users', 'add', 'sue'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  it('pairs a sender, answers in the thread, acknowledges envelopes and survives a refresh', async () => {
    const slack = cp.slack;
    await waitFor(() => slack.socketConnections >= 1 || undefined, 60_000, 'a Socket Mode connection');
    const first = slack.socketMessage('U0SUE', 'C0GENERAL', 'hello there');
    await waitFor(() => slack.acked.has(first) || undefined, 60_000, 'the first envelope acknowledged');
    const notice = await waitFor(
      () => slack.posted.find((p) => p.channel === 'C0GENERAL' && CODE.test(p.text)),
      60_000,
      'the pairing notice',
    );
    const code = CODE.exec(notice.text)![1]!;
    assert.equal((await cp.talon(['pairing', 'approve', code, '--user', 'sue'])).code, 0);
    const second = slack.socketMessage('U0SUE', 'C0GENERAL', 'roll a die');
    await waitFor(() => slack.acked.has(second) || undefined, 60_000, 'the second envelope acknowledged');
    const reply = await waitFor(() => slack.posted.find((p) => p.text === 'echo: roll a die'), 60_000, 'the answer');
    assert.ok(reply.threadTs, 'answered in the thread of the message');
    slack.socketDisconnect();
    await waitFor(() => slack.socketConnections >= 2 || undefined, 60_000, 'a new connection after the refresh');
    assert.ok(slack.socketOpens >= 2, 'a new apps.connections.open for it');
    const third = slack.socketMessage('U0SUE', 'C0GENERAL', 'after the refresh');
    await waitFor(() => slack.acked.has(third) || undefined, 60_000, 'the envelope on the new connection acknowledged');
    await waitFor(() => slack.posted.find((p) => p.text === 'echo: after the refresh'), 60_000, 'the answer after the refresh');
    assert.ok(!cp.tp.log('gateway').includes(slack.appToken), 'the app-level token is not in the gateway log');
  });
});
