// Mattermost end to end without a public URL: the gateway asks GET /api/v4/users/me and
// opens the WebSocket API through egress, which fills `Authorization: Bearer` from the vault
// (the gateway never holds the token). A post from an unknown user gets a pairing notice in
// its thread; after the operator approves the code each post is exactly one turn with one
// reply (POST /api/v4/posts), the bot's own posts (which the server broadcasts too) start no
// turn, and after the server drops the connection the gateway reconnects and carries on; a
// post made while it was disconnected (which Mattermost does not replay) is fetched by the
// catch-up (GET /api/v4/channels/{id}/posts?since=) and answered once.
// The token is never in the gateway's log nor in any NATS message.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Subscription } from '@nats-io/transport-node';
import {
  mattermostId,
  startChannelPlatform,
  startFakeMattermost,
  waitFor,
  type ChannelPlatform,
  type FakeMattermost,
} from '@talon/testkit';

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;

describe('Mattermost', () => {
  let cp: ChannelPlatform;
  let mm: FakeMattermost;
  before(async () => {
    mm = await startFakeMattermost();
    cp = await startChannelPlatform({
      extraFakes: [mm],
      extraSecrets: [['mattermost_bot_token', mm.token, ['--host', `127.0.0.1:${mm.port}`, '--bearer']]],
      env: {
        TALON_CHANNELS: 'telegram,slack,discord,webhook,mattermost',
        TALON_MATTERMOST_URL: mm.url,
        GATEWAY_CHANNEL_RECONNECT_BACKOFF_MS: '100',
      },
    });
    assert.equal((await cp.talon(['users', 'add', 'sue'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
    await mm?.close();
  });

  it('pairs a sender, answers each post once in its thread, survives dropped connections and catches up', async () => {
    // Everything on NATS from here on, to look for the token in.
    const nc = await cp.tp.admin();
    const seen: Buffer[] = [];
    const sub: Subscription = nc.subscribe('>', { callback: (_e, m) => void seen.push(Buffer.from(m.data)) });

    await waitFor(() => mm.connections >= 1 || undefined, 60_000, 'a WebSocket connection');
    assert.deepEqual(mm.upgrades, [`Bearer ${mm.token}`], 'egress filled the upgrade’s Authorization header');
    const sue = mattermostId();
    const town = mattermostId();
    const first = mm.post({ userId: sue, channelId: town, message: 'hello there' });
    const notice = await waitFor(() => mm.replies.find((p) => p.channel_id === town && CODE.test(p.message)), 60_000, 'the pairing notice');
    assert.equal(notice.root_id, first, 'the notice goes into the post’s thread');
    const code = CODE.exec(notice.message)![1]!;
    assert.equal((await cp.talon(['pairing', 'approve', code, '--user', 'sue'])).code, 0);

    const asked = mm.post({ userId: sue, channelId: town, message: '@talon roll a die' });
    const reply = await waitFor(() => mm.replies.find((p) => p.message === 'echo: roll a die'), 60_000, 'the answer');
    assert.equal(reply.root_id, asked, 'answered in the thread of the post');
    assert.equal(reply.props.mentionHighlightDisabled, true);
    // A direct message is answered in the channel itself.
    const dm = mattermostId();
    mm.post({ userId: sue, channelId: dm, message: 'in private', channelType: 'D' });
    const private_ = await waitFor(() => mm.replies.find((p) => p.message === 'echo: in private'), 60_000, 'the DM answer');
    assert.equal(private_.root_id, '');
    // A system post is no turn.
    mm.post({ userId: sue, channelId: town, message: 'sue joined the channel', type: 'system_join_channel' });

    mm.drop();
    await waitFor(() => mm.connections >= 2 || undefined, 60_000, 'a new connection after the drop');
    mm.post({ userId: sue, channelId: town, message: 'after the drop' });
    await waitFor(() => mm.replies.find((p) => p.message === 'echo: after the drop'), 60_000, 'the answer after the drop');

    // Dropped again, and the server refuses upgrades for a while: a post made meanwhile is not broadcast to anyone.
    mm.refuseUpgrades = true;
    const tries = mm.upgrades.length;
    mm.drop();
    await waitFor(() => mm.upgrades.length > tries || undefined, 60_000, 'a refused reconnect');
    const missed = mm.post({ userId: sue, channelId: town, message: 'while you were away' });
    mm.refuseUpgrades = false;
    await waitFor(() => mm.connections >= 3 || undefined, 60_000, 'the connection back');
    const late = await waitFor(() => mm.replies.find((p) => p.message === 'echo: while you were away'), 60_000, 'the missed post answered');
    assert.equal(late.root_id, missed, 'the missed post is answered in its thread');
    assert.ok(
      mm.catchUps.some((c) => c.startsWith(`${town}?since=`)),
      'the catch-up asked for the channel’s posts since the last one',
    );

    // Exactly one turn and one reply per post; the bot's own replies (broadcast back) were no turns.
    const texts = mm.replies.map((p) => p.message);
    for (const t of ['echo: roll a die', 'echo: in private', 'echo: after the drop', 'echo: while you were away'])
      assert.equal(texts.filter((x) => x === t).length, 1, `one reply "${t}"`);
    assert.ok(
      !texts.some((t) => t.startsWith('echo: echo:') || t.includes('joined the channel')),
      'own posts and system posts are no turns',
    );
    const lastUser = (body: Record<string, unknown>) =>
      ((body.messages as Array<{ role: string; content: unknown }> | undefined) ?? []).filter((m) => m.role === 'user').at(-1)?.content;
    const llmTurns = cp.llm.requests.filter((r) => lastUser(r.body) === 'roll a die').length;
    assert.equal(llmTurns, 1, 'one model call for the post');

    sub.unsubscribe();
    assert.ok(!cp.tp.log('gateway').includes(mm.token), 'the token is not in the gateway log');
    assert.ok(seen.length > 0, 'NATS traffic was observed');
    assert.ok(!seen.some((b) => b.includes(mm.token)), 'the token is in no NATS message');
    assert.ok(mm.upgrades.every((a) => a === `Bearer ${mm.token}`));
  });
});
