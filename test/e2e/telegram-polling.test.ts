// Telegram without a public URL: with no webhook configured the gateway long-polls the
// (fake) Bot API's getUpdates through egress — the vault's bot token injected by egress, never
// held by the gateway — and every queued update becomes exactly one turn, across a gateway
// restart, a re-delivered update and two gateway replicas of which only one polls at a time.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Kvm } from '@nats-io/kv';
import { KV_BUCKETS } from '@talon/kit/subjects';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';
import { receivedTexts } from '../../packages/testkit/src/fake-llm.ts';
import { waitFor } from '../../packages/testkit/src/wait.ts';

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;
const POLLING_ENV = {
  // Unset: the default (polling when no webhook mode is chosen).
  GATEWAY_TELEGRAM_MODE: undefined,
  GATEWAY_TELEGRAM_POLL_TIMEOUT_S: '2',
  GATEWAY_CHANNEL_LEASE_TTL_MS: '3000',
  GATEWAY_CHANNEL_RECONNECT_BACKOFF_MS: '100',
  GATEWAY_CHANNEL_RECONNECT_MAX_BACKOFF_MS: '1000',
  GATEWAY_PAIRING_NOTICE_INTERVAL_MS: '0',
};

/** Turns the agent ran for `text`: model calls whose newest user message it is (history repeats older ones). */
const turnsFor = (cp: ChannelPlatform, text: string) =>
  cp.llm.requests.filter(
    (r) =>
      receivedTexts(r)
        .filter((m) => m.role === 'user')
        .at(-1)?.text === text,
  ).length;

const countLines = (log: string, msg: string) => log.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;

describe('Telegram by long polling, one gateway', () => {
  let cp: ChannelPlatform;
  const llmSaw = (text: string) => turnsFor(cp, text);
  const sentText = (text: string) => cp.telegram.sent.filter((s) => s.text === text).length;

  before(async () => {
    cp = await startChannelPlatform({ env: POLLING_ENV });
    assert.equal((await cp.talon(['users', 'add', 'tess'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  it('polls getUpdates through egress with the vault’s token; the webhook route is off', async () => {
    const poll = await waitFor(() => cp.telegram.polls.at(0), 30_000, 'the first getUpdates');
    assert.ok(decodeURIComponent(poll.path).includes(`/bot${cp.telegram.botToken}/getUpdates`), 'egress injected the token');
    assert.deepEqual(poll.json.allowed_updates, ['message']);
    assert.equal(poll.json.timeout, 2);
    const r = await cp.telegram.deliver(cp.gatewayUrl, cp.telegram.message(4242, 'via webhook'));
    assert.equal(r.status, 409, r.text);
    assert.match(r.json.error.message, /long polling.*GATEWAY_TELEGRAM_MODE=webhook/);
  });

  it('an unpaired user gets a pairing code; once approved, their message is answered through the platform', async () => {
    cp.telegram.queue(cp.telegram.message(4242, 'let me in'));
    const notice = await waitFor(() => cp.telegram.sent.find((s) => s.chatId === 4242 && CODE.test(s.text)), 30_000, 'the pairing notice');
    assert.equal(llmSaw('let me in'), 0);
    const code = CODE.exec(notice.text)![1]!;
    assert.equal((await cp.talon(['pairing', 'approve', code, '--user', 'tess'])).code, 0);
    cp.telegram.queue(cp.telegram.message(4242, 'what is two plus two'));
    const reply = await waitFor(() => cp.telegram.sent.find((s) => s.text === 'echo: what is two plus two'), 30_000, 'the reply');
    assert.equal(reply.chatId, 4242);
    await waitFor(() => cp.telegram.unconfirmed === 0 || undefined, 15_000, 'the update to be confirmed by the next offset');
  });

  it('an update polled again (crash after queueing it, before its offset was stored) is not a second turn', async () => {
    const u = cp.telegram.message(4242, 'only once please');
    cp.telegram.queue(u);
    await waitFor(() => sentText('echo: only once please') === 1 || undefined, 30_000, 'the reply');
    // The crash: the gateway stops, its stored offset is the one before the update, and
    // Telegram (never told otherwise) sends the update again.
    await cp.tp.platform.stopService('gateway');
    const state = await new Kvm(await cp.tp.admin()).open(KV_BUCKETS.channelState);
    await state.put('telegram.offset.telegram_bot_token', new TextEncoder().encode(String(u.update_id)));
    cp.telegram.queue(u);
    cp.telegram.queue(cp.telegram.message(4242, 'marker after the repeat'));
    const polls = cp.telegram.polls.length;
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
    // A later message's answer: a second turn of the repeat would have been queued before it.
    await waitFor(() => sentText('echo: marker after the repeat') === 1 || undefined, 30_000, 'the marker’s reply');
    assert.equal(cp.telegram.polls[polls]!.json.offset, u.update_id, 'polled from before the update: Telegram sent it again');
    assert.equal(llmSaw('only once please'), 1);
    assert.equal(sentText('echo: only once please'), 1);
  });

  it('a message sent while the gateway is down is answered once after it restarts, from the stored offset', async () => {
    await cp.tp.platform.stopService('gateway');
    const nc = await cp.tp.admin();
    const state = await new Kvm(nc).open(KV_BUCKETS.channelState);
    const stored = Number(new TextDecoder().decode((await state.get('telegram.offset.telegram_bot_token'))!.value));
    assert.ok(stored > 0, 'the offset is stored');
    const leases = await new Kvm(nc).open(KV_BUCKETS.leases);
    const lease = await leases.get('lease.gateway.telegram.telegram_bot_token');
    assert.notEqual(lease?.operation, 'PUT', 'the stopped gateway gave its lease up');
    cp.telegram.queue(cp.telegram.message(4242, 'across a restart'));
    const pollsBefore = cp.telegram.polls.length;
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
    await waitFor(() => sentText('echo: across a restart') === 1 || undefined, 30_000, 'the reply after restart');
    assert.equal(cp.telegram.polls[pollsBefore]!.json.offset, stored, 'resumed from the stored offset');
    assert.equal(llmSaw('across a restart'), 1);
  });

  it('a webhook set for the bot is deleted once, with a clear log line, and polling goes on', async () => {
    cp.telegram.webhookUrl = 'https://old.example/hooks/telegram';
    await waitFor(() => cp.telegram.webhookUrl === '' || undefined, 30_000, 'deleteWebhook');
    assert.ok(cp.telegram.calls.some((c) => c.path.endsWith('/deleteWebhook')));
    assert.match(cp.tp.log('gateway'), /has a webhook set, which blocks getUpdates; deleting it/);
    cp.telegram.queue(cp.telegram.message(4242, 'after the webhook'));
    await waitFor(() => sentText('echo: after the webhook') === 1 || undefined, 30_000, 'the reply');
  });

  it('a platform outage is retried with backoff, logged once, then recovered', async () => {
    cp.telegram.mode = { failNext: { count: 3, status: 502 } };
    const logBefore = countLines(cp.tp.log('gateway'), 'telegram polling failing; retrying with backoff');
    await waitFor(() => cp.telegram.mode.failNext?.count === 0 || undefined, 30_000, 'three failed polls');
    cp.telegram.queue(cp.telegram.message(4242, 'after an outage'));
    await waitFor(() => sentText('echo: after an outage') === 1 || undefined, 30_000, 'the reply after the outage');
    const log = cp.tp.log('gateway');
    assert.equal(countLines(log, 'telegram polling failing; retrying with backoff') - logBefore, 1, 'one line for the outage');
    assert.ok(countLines(log, 'telegram polling recovered') >= 1);
  });

  it('no platform credential in the gateway’s log', () => {
    const log = cp.tp.log('gateway');
    assert.ok(!log.includes(cp.telegram.botToken));
    assert.ok(!log.includes(cp.telegram.botToken.split(':')[1]!));
  });
});

describe('Telegram by long polling, two gateway replicas', () => {
  let cp: ChannelPlatform;
  const llmSaw = (text: string) => turnsFor(cp, text);
  const sentText = (text: string) => cp.telegram.sent.filter((s) => s.text === text).length;
  const started = (instance: string) => countLines(cp.tp.log(instance), 'telegram polling started');

  before(async () => {
    cp = await startChannelPlatform({ env: POLLING_ENV, replicas: { gateway: 2 } });
    assert.equal((await cp.talon(['users', 'add', 'rita'])).code, 0);
    cp.telegram.queue(cp.telegram.message(5151, 'hello'));
    const notice = await waitFor(() => cp.telegram.sent.find((s) => s.chatId === 5151 && CODE.test(s.text)), 30_000, 'the pairing notice');
    assert.equal((await cp.talon(['pairing', 'approve', CODE.exec(notice.text)![1]!, '--user', 'rita'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  const burst = async (tag: string, n: number) => {
    const texts = Array.from({ length: n }, (_, i) => `${tag} ${i}`);
    for (const t of texts) cp.telegram.queue(cp.telegram.message(5151, t));
    for (const t of texts) await waitFor(() => sentText(`echo: ${t}`) >= 1 || undefined, 60_000, `the reply to ${t}`);
    return texts;
  };

  it('only one replica polls; each update is one turn', async () => {
    const texts = await burst('burst', 10);
    assert.equal(started('gateway') + started('gateway-2'), 1, 'exactly one replica started polling');
    assert.equal(cp.telegram.pollConflicts, 0, 'never two getUpdates at once');
    assert.equal(countLines(cp.tp.log('gateway') + cp.tp.log('gateway-2'), 'lease acquired'), 1);
    for (const t of texts) {
      assert.equal(llmSaw(t), 1, `one turn for ${t}`);
      assert.equal(sentText(`echo: ${t}`), 1, `one reply to ${t}`);
    }
  });

  it('when the polling replica stops, the other takes over at once; a killed one is replaced after the lease runs out', async () => {
    const leader = started('gateway') === 1 ? 'gateway' : 'gateway-2';
    const other = leader === 'gateway' ? 'gateway-2' : 'gateway';
    await cp.tp.platform.process(leader)!.stop();
    await waitFor(() => started(other) === 1 || undefined, 10_000, `${other} to take over`);
    // (The stopped replica's last long poll may still be held upstream: egress does not cut
    // it, so Telegram's 409 for it reaches nobody. Who polls is told by the lease.)
    const afterStop = await burst('after stop', 5);

    // Back to two; then the poller dies without giving the lease up.
    cp.tp.platform.startInstance(leader);
    await cp.tp.platform.waitHealthy(['gateway']);
    cp.tp.platform.process(other)!.kill('SIGKILL');
    await cp.tp.platform.process(other)!.exited;
    const queuedWhileDown = cp.telegram.message(5151, 'while the poller is dead');
    cp.telegram.queue(queuedWhileDown);
    await waitFor(() => started(leader) >= 2 || undefined, 30_000, `${leader} to take over after the lease ran out`);
    await waitFor(() => sentText('echo: while the poller is dead') === 1 || undefined, 30_000, 'the reply');
    for (const t of [...afterStop, 'while the poller is dead']) {
      assert.equal(llmSaw(t), 1, `one turn for ${t}`);
      assert.equal(sentText(`echo: ${t}`), 1, `one reply to ${t}`);
    }
  });
});
