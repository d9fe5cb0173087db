import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TalonError } from '@talon/kit/errors';
import {
  channelPostsCall,
  mattermostLeaseKey,
  mattermostSend,
  mattermostSignature,
  mattermostTarget,
  mattermostVerdict,
  mattermostWebSocketUrl,
  parseChannelPosts,
  parseMattermostFrame,
  parseUsersMe,
  pingFrame,
  usersMeCall,
} from './mattermost.ts';

const BOT = { userId: 'b'.repeat(26), username: 'talon' };
const SUE = 'u'.repeat(26);
const CHAN = 'c'.repeat(26);
const POST = 'p'.repeat(26);

function posted(post: Record<string, unknown>, data: Record<string, unknown> = {}, seq = 3): string {
  const p = { id: POST, create_at: 1_700_000_000_000, user_id: SUE, channel_id: CHAN, root_id: '', message: 'hello', type: '', ...post };
  return JSON.stringify({
    event: 'posted',
    data: { channel_type: 'O', sender_name: '@sue', team_id: 't'.repeat(26), post: JSON.stringify(p), ...data },
    broadcast: { omit_users: null, user_id: '', channel_id: CHAN, team_id: '' },
    seq,
  });
}

describe('Mattermost', () => {
  it('derives the WebSocket and REST URLs from the server URL, the token only as a placeholder', () => {
    assert.equal(mattermostWebSocketUrl('https://chat.example.com/'), 'wss://chat.example.com/api/v4/websocket');
    assert.equal(mattermostWebSocketUrl('http://127.0.0.1:8065/mm'), 'ws://127.0.0.1:8065/mm/api/v4/websocket');
    const me = usersMeCall('https://chat.example.com', 'mattermost_bot_token');
    assert.equal(me.url, 'https://chat.example.com/api/v4/users/me');
    assert.equal(me.headers.authorization, 'Bearer {{secret:mattermost_bot_token}}');
    assert.equal(mattermostLeaseKey('mattermost_bot_token'), 'lease.gateway.mattermost.mattermost_bot_token');
  });

  it('reads users/me, and tells a bad token (fatal) from trouble (retry)', () => {
    assert.deepEqual(parseUsersMe(200, JSON.stringify({ id: BOT.userId, username: 'talon' })), { kind: 'me', ...BOT });
    assert.equal(parseUsersMe(200, '{"id":"short"}').kind, 'retry');
    assert.equal(parseUsersMe(401, '{"id":"api.context.session_expired.app_error"}').kind, 'fatal');
    assert.deepEqual(parseUsersMe(429, '', '3'), { kind: 'retry', code: 'users_me_http_429', afterMs: 3000 });
    assert.equal(parseUsersMe(502, 'nope').kind, 'retry');
  });

  it('turns a posted event (data.post a JSON string) into a message in the post’s thread', () => {
    const f = parseMattermostFrame(posted({ message: '@talon  roll a die' }), BOT);
    assert.equal(f.kind, 'message');
    assert.equal(f.seq, 3);
    if (f.kind !== 'message') return;
    assert.deepEqual(f.at, { channelId: CHAN, channelType: 'O', createAt: 1_700_000_000_000 });
    assert.deepEqual(f.event, {
      channel: 'mattermost',
      dedupeId: `mattermost:${POST}`,
      account: SUE,
      displayName: 'sue',
      threadId: `${CHAN}:${POST}`,
      text: 'roll a die',
    });
    // A reply in a thread stays in it; a direct message is one running conversation.
    const root = 'r'.repeat(26);
    const inThread = parseMattermostFrame(posted({ root_id: root }), BOT);
    assert.equal(inThread.kind === 'message' && inThread.event.threadId, `${CHAN}:${root}`);
    const dm = parseMattermostFrame(posted({}, { channel_type: 'D' }), BOT);
    assert.equal(dm.kind === 'message' && dm.event.threadId, CHAN);
    // Another user's name containing the bot's is not a mention of it.
    const other = parseMattermostFrame(posted({ message: '@talonx hi' }), BOT);
    assert.equal(other.kind === 'message' && other.event.text, '@talonx hi');
  });

  it('ignores its own posts, system posts, bots, webhooks, edits and empty posts', () => {
    const ignored = [
      posted({ user_id: BOT.userId }),
      posted({ type: 'system_join_channel' }),
      posted({ props: { from_bot: 'true' } }),
      posted({ props: { from_webhook: 'true' } }),
      posted({ message: '   ' }),
      posted({ delete_at: 1_700_000_000_001 }),
      posted({ id: 'not-an-id' }),
      posted({ user_id: '../../etc' }),
      JSON.stringify({ event: 'posted', data: { post: '{not json' }, seq: 4 }),
      JSON.stringify({ event: 'posted', data: { post: { id: POST } }, seq: 5 }),
      JSON.stringify({ event: 'post_edited', data: { post: JSON.parse(posted({})).data.post }, seq: 6 }),
      JSON.stringify({ event: 'typing', data: {}, seq: 7 }),
      JSON.stringify({ status: 'OK', seq_reply: 1, data: { text: 'pong' } }),
      'not json',
      '[]',
    ];
    for (const raw of ignored) assert.equal(parseMattermostFrame(raw, BOT).kind, 'other', raw);
    assert.deepEqual(parseMattermostFrame(JSON.stringify({ event: 'hello', data: { server_version: '9' }, seq: 0 }), BOT), {
      kind: 'hello',
      seq: 0,
    });
    assert.deepEqual(JSON.parse(pingFrame(2)), { seq: 2, action: 'ping' });
  });

  it('sends replies as POST /api/v4/posts in the thread, with the bearer placeholder and no channel-wide mentions', () => {
    const calls = mattermostSend('https://chat.example.com', 'mattermost_bot_token', `${CHAN}:${POST}`, '@channel hi', 'mattermost-1');
    assert.equal(calls.length, 1);
    const [c] = calls;
    assert.equal(c!.url, 'https://chat.example.com/api/v4/posts');
    assert.equal(c!.headers.authorization, 'Bearer {{secret:mattermost_bot_token}}');
    const body = JSON.parse(c!.body);
    assert.equal(body.channel_id, CHAN);
    assert.equal(body.root_id, POST);
    assert.equal(body.message, '@channel hi');
    assert.equal(body.props.mentionHighlightDisabled, true);
    // The same reply part gets the same pending_post_id (a redelivery is deduplicated by the server).
    const again = mattermostSend('https://chat.example.com', 'mattermost_bot_token', `${CHAN}:${POST}`, '@channel hi', 'mattermost-1');
    assert.equal(JSON.parse(again[0]!.body).pending_post_id, body.pending_post_id);
    assert.equal(JSON.parse(mattermostSend('https://x', 's', CHAN, 'x', 'i')[0]!.body).root_id, undefined);
    assert.equal(mattermostSend('https://x', 's', CHAN, 'a'.repeat(40_000), 'i').length, 3);
    assert.throws(() => mattermostTarget('C0GENERAL'));
  });

  it('catches up on a channel: the posts since a time, oldest first, edits of older posts dropped', () => {
    const c = channelPostsCall('https://chat.example.com', 'mattermost_bot_token', CHAN, 1_700_000_000_000);
    assert.equal(c.url, `https://chat.example.com/api/v4/channels/${CHAN}/posts?since=1700000000000`);
    assert.equal(c.headers.authorization, 'Bearer {{secret:mattermost_bot_token}}');
    assert.throws(() => channelPostsCall('https://x', 's', '../users', 0));
    const posts = {
      a: { id: 'a'.repeat(26), create_at: 1_700_000_000_300 },
      b: { id: 'b'.repeat(26), create_at: 1_700_000_000_100 },
      old: { id: 'o'.repeat(26), create_at: 1_600_000_000_000, update_at: 1_700_000_000_200 },
    };
    const got = parseChannelPosts(200, JSON.stringify({ order: [], posts }), 1_700_000_000_000);
    assert.equal(got.kind, 'posts');
    if (got.kind === 'posts')
      assert.deepEqual(
        got.posts.map((p) => p.createAt),
        [1_700_000_000_100, 1_700_000_000_300],
      );
    assert.deepEqual(parseChannelPosts(403, '{}', 0), { kind: 'failed', code: 'http_403' });
    assert.deepEqual(parseChannelPosts(200, '[]', 0), { kind: 'failed', code: 'unreadable' });
  });

  it('judges send answers', () => {
    assert.deepEqual(mattermostVerdict(201, JSON.stringify({ id: POST })), { ok: true, messageId: POST });
    assert.deepEqual(mattermostVerdict(429, '{}', '2'), { ok: false, retry: true, afterMs: 2000, code: 'rate_limited' });
    assert.equal(mattermostVerdict(503, '').ok, false);
    assert.deepEqual(mattermostVerdict(403, '{"id":"api.context.permissions.app_error"}'), { ok: false, retry: false, code: 'http_403' });
  });

  it('never throws on hostile frames, and what it passes on has well-formed ids', () => {
    const junk: unknown[] = [null, 0, -1, 1e300, '', 'x'.repeat(300), [], {}, true, '{"id":1}', '__proto__', { toString: 1 }];
    let seed = 7;
    const pick = <T>(xs: readonly T[]): T => xs[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % xs.length]!;
    const keys = ['id', 'user_id', 'channel_id', 'root_id', 'message', 'type', 'props', 'create_at', 'delete_at'];
    for (let i = 0; i < 3000; i++) {
      const post: Record<string, unknown> = JSON.parse(JSON.parse(posted({})).data.post);
      post[pick(keys)] = pick(junk);
      const data: Record<string, unknown> = {
        channel_type: pick(['O', 'D', 1, null]),
        sender_name: pick(['@x', 5, '@' + 'y'.repeat(100)]),
      };
      data.post = pick([JSON.stringify(post), post, '{', 7]);
      const frame = JSON.stringify({
        event: pick(['posted', 'hello', 'typing', 5]),
        data: pick([data, null, 'x']),
        seq: pick([1, -1, 'a', 2 ** 60]),
      });
      const f = parseMattermostFrame(frame, BOT);
      if (f.kind === 'message') {
        assert.match(f.event.account, /^[a-z0-9]{26}$/);
        assert.match(f.event.threadId, /^[a-z0-9]{26}(:[a-z0-9]{26})?$/);
        assert.ok(f.event.text.length > 0);
      }
      if (f.seq !== undefined) assert.ok(Number.isSafeInteger(f.seq) && f.seq >= 0);
    }
  });

  it('has no webhook: the signature check refuses', () => {
    assert.throws(
      () => mattermostSignature(),
      (e: unknown) => e instanceof TalonError && e.code === 'unauthenticated',
    );
  });
});
