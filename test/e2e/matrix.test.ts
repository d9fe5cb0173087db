// Matrix by /sync long polling: the gateway syncs a (fake) homeserver through egress — the vault's
// access token injected by egress as the bearer, never held by the gateway — and every new message
// becomes exactly one turn and one reply (PUT send with a txnId derived from the message), across
// gateway restarts, a batch synced again and a lost send answer; history from before the first
// sync, the bot's own messages, non-text and encrypted events are not answered.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS } from '@talon/kit/subjects';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';
import { startFakeMatrix, type FakeMatrix } from '../../packages/testkit/src/fake-matrix.ts';
import { receivedTexts } from '../../packages/testkit/src/fake-llm.ts';
import { waitFor } from '../../packages/testkit/src/wait.ts';

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;
const SINCE_KEY = 'matrix.since.matrix_access_token';
const ALICE = '@alice:matrix.test';
const countLines = (log: string, msg: string) => log.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;

describe('Matrix by /sync long polling', () => {
  let fm: FakeMatrix;
  let cp: ChannelPlatform;
  let room: string;
  /** Every NATS message the admin saw while the suite ran, searched for the token at the end. */
  const natsPayloads: Buffer[] = [];
  const turnsFor = (text: string) =>
    cp.llm.requests.filter(
      (r) =>
        receivedTexts(r)
          .filter((m) => m.role === 'user')
          .at(-1)?.text === text,
    ).length;
  const sentText = (text: string) => fm.sent.filter((s) => s.body === text).length;
  const say = (text: string, sender = ALICE) => fm.message(room, sender, text);
  const replied = (text: string) => waitFor(() => sentText(`echo: ${text}`) >= 1 || undefined, 30_000, `the reply to ${text}`);
  const restartGateway = async () => {
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
  };

  before(async () => {
    fm = await startFakeMatrix();
    room = fm.room('lobby');
    // Written before the gateway ever synced: history, never answered.
    say('old history');
    cp = await startChannelPlatform({
      env: {
        TALON_CHANNELS: 'matrix',
        TALON_MATRIX_HOMESERVER_URL: fm.url,
        GATEWAY_MATRIX_SYNC_TIMEOUT_S: '2',
        GATEWAY_CHANNEL_LEASE_TTL_MS: '3000',
        GATEWAY_CHANNEL_RECONNECT_BACKOFF_MS: '100',
        GATEWAY_CHANNEL_RECONNECT_MAX_BACKOFF_MS: '1000',
        GATEWAY_PAIRING_NOTICE_INTERVAL_MS: '0',
      },
      extraFakes: [fm],
      extraSecrets: [['matrix_access_token', fm.accessToken, ['--host', `127.0.0.1:${fm.port}`, '--bearer']]],
    });
    // Everything published on Talon's subjects and KV buckets. Not `>`: a wiretap on `_INBOX.>`
    // would keep a stopped gateway's pull requests looking alive, and JetStream would hand them
    // replies until ack_wait.
    const nc = await cp.tp.admin();
    for (const subject of ['talon.>', '$KV.>']) {
      nc.subscribe(subject, {
        callback: (_e, m) => {
          natsPayloads.push(Buffer.from(m.data));
          if (m.headers) natsPayloads.push(Buffer.from(JSON.stringify([...m.headers.keys()].map((k) => m.headers!.values(k)))));
        },
      });
    }
    assert.equal((await cp.talon(['users', 'add', 'alice'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
    await fm?.close();
  });

  it('syncs through egress with the vault’s token; the initial sync answers no history; no webhook', async () => {
    await waitFor(() => fm.syncs.find((c) => c.query.has('since')), 30_000, 'the first incremental sync');
    const [who] = fm.calls.filter((c) => c.path.endsWith('/account/whoami'));
    assert.ok(who, 'asked who the bot is');
    const first = fm.syncs[0]!;
    assert.equal(first.query.has('since'), false, 'an initial sync first');
    assert.equal(first.query.get('timeout'), '0');
    const next = fm.syncs[1]!;
    assert.equal(next.query.get('timeout'), '2000');
    assert.ok(
      fm.calls.every((c) => c.headers.authorization === `Bearer ${fm.accessToken}`),
      'egress put the vault’s token in every call',
    );
    const r = await fetch(`${cp.gatewayUrl}/hooks/matrix`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 401);
    assert.match(await r.text(), /Matrix has no webhook/);
    // Two more long polls: anything the initial batch set off (a pairing notice to its sender) is out by now.
    await waitFor(() => fm.syncs.filter((c) => c.query.has('since')).length >= 3 || undefined, 30_000, 'two more syncs');
    assert.equal(turnsFor('old history'), 0);
    assert.deepEqual(fm.sent, [], 'history set off nothing, not even a pairing notice');
  });

  it('an unpaired sender gets a pairing code in the room; once approved, each message is one turn and one reply', async () => {
    say('let me in');
    const notice = await waitFor(() => fm.sent.find((s) => s.roomId === room && CODE.test(String(s.body))), 30_000, 'the pairing notice');
    assert.equal(notice.msgtype, 'm.text');
    assert.equal(turnsFor('let me in'), 0);
    assert.equal((await cp.talon(['pairing', 'approve', CODE.exec(String(notice.body))![1]!, '--user', 'alice'])).code, 0);
    await waitFor(() => fm.sent.find((s) => /You are now paired/.test(String(s.body))), 30_000, 'the paired notice');
    say('what is two plus two');
    await replied('what is two plus two');
    assert.equal(fm.sent.find((s) => s.body === 'echo: what is two plus two')!.roomId, room);
    assert.equal(turnsFor('what is two plus two'), 1);
  });

  it('the bot’s own messages, notices, images and encrypted events are not answered', async () => {
    fm.message(room, ALICE, 'a notice', { msgtype: 'm.notice' });
    fm.message(room, ALICE, 'an image', { msgtype: 'm.image' });
    fm.encrypted(room, ALICE);
    fm.message(room, fm.userId, 'the bot talking');
    say('marker after the ignored ones');
    await replied('marker after the ignored ones');
    for (const t of ['a notice', 'an image', 'the bot talking']) assert.equal(turnsFor(t), 0, t);
    assert.ok(!fm.sent.some((s) => String(s.body).startsWith('echo: echo:')), 'never an answer to its own reply');
    assert.equal(turnsFor('old history'), 0);
  });

  it('a send whose answer was lost is retried with the same txnId: one message in the room', async () => {
    fm.mode.loseSendAnswers = 1;
    say('say it once');
    await replied('say it once');
    const puts = await waitFor(
      () => {
        const p = fm.calls.filter((c) => c.method === 'PUT' && c.json?.body === 'echo: say it once');
        return p.length >= 2 ? p : undefined;
      },
      30_000,
      'the retried send',
    );
    assert.equal(new Set(puts.map((c) => c.path)).size, 1, 'the same transaction id each time');
    assert.equal(sentText('echo: say it once'), 1);
    assert.equal(turnsFor('say it once'), 1);
  });

  it('a batch synced again (crash after queueing, before the since token was stored) is not a second turn', async () => {
    const before = fm.token;
    say('only once please');
    await replied('only once please');
    await cp.tp.platform.stopService('gateway');
    const state = await new Kvm(await cp.tp.admin()).open(KV_BUCKETS.channelState);
    await state.put(SINCE_KEY, new TextEncoder().encode(before));
    say('marker after the repeat');
    const syncs = fm.syncs.length;
    await restartGateway();
    await replied('marker after the repeat');
    assert.equal(fm.syncs[syncs]!.query.get('since'), before, 'synced from before the message: it came again');
    assert.equal(turnsFor('only once please'), 1);
    assert.equal(sentText('echo: only once please'), 1);
  });

  it('a message sent while the gateway is down is answered once after it restarts, from the stored since token', async () => {
    await cp.tp.platform.stopService('gateway');
    const nc = await cp.tp.admin();
    const stored = new TextDecoder().decode((await (await new Kvm(nc).open(KV_BUCKETS.channelState)).get(SINCE_KEY))!.value);
    assert.match(stored, /^s\d+$/);
    const lease = await (await new Kvm(nc).open(KV_BUCKETS.leases)).get('lease.gateway.matrix.matrix_access_token');
    assert.notEqual(lease?.operation, 'PUT', 'the stopped gateway gave its lease up');
    say('across a restart');
    const syncs = fm.syncs.length;
    await restartGateway();
    await replied('across a restart');
    assert.equal(fm.syncs[syncs]!.query.get('since'), stored, 'resumed from the stored token, no initial sync');
    assert.equal(turnsFor('across a restart'), 1);
    assert.equal(sentText('echo: across a restart'), 1);
  });

  it('a homeserver outage is retried with backoff, logged once, then recovered', async () => {
    const before = countLines(cp.tp.log('gateway'), 'matrix sync failing; retrying with backoff');
    fm.mode.failNext = { count: 3, status: 502 };
    await waitFor(() => fm.mode.failNext?.count === 0 || undefined, 30_000, 'three failed calls');
    say('after an outage');
    await replied('after an outage');
    const log = cp.tp.log('gateway');
    assert.equal(countLines(log, 'matrix sync failing; retrying with backoff') - before, 1, 'one line for the outage');
    assert.ok(countLines(log, 'matrix sync recovered') >= 1);
    assert.equal(turnsFor('after an outage'), 1);
  });

  it('invites are not accepted unless GATEWAY_MATRIX_AUTO_JOIN is on', async () => {
    const invited = fm.invite(ALICE);
    await waitFor(() => /GATEWAY_MATRIX_AUTO_JOIN is off/.test(cp.tp.log('gateway')) || undefined, 30_000, 'the invite to be seen');
    assert.ok(!fm.calls.some((c) => c.path.endsWith('/join')));
    assert.equal(fm.isJoined(invited), false);
  });

  it('the access token never appears in the gateway’s log or on NATS', () => {
    const token = fm.accessToken;
    assert.ok(!cp.tp.log('gateway').includes(token));
    assert.ok(natsPayloads.length > 10, 'NATS traffic was watched');
    assert.ok(!natsPayloads.some((p) => p.includes(token)));
    // The random part alone (20 letters, FakeMatrix): a fragment too short would match by chance.
    const random = token.split('_')[2]!;
    assert.equal(random.length, 20);
    assert.ok(!natsPayloads.some((p) => p.includes(random)));
  });
});
