// Chat platforms end to end: signed webhooks from loopback fakes of Telegram,
// Slack, Discord and a generic signer reach the gateway, are verified by the
// vault (through egress's EgressService), paired with Talon users, run through
// the real pipeline, and the replies go back to the fakes through egress with
// the bot tokens injected from the vault (the gateway never holds one).
// Needs egress's EgressService (VerifyWebhook) to be implemented.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '@talon/kit/subjects';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';

async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const CODE = /\b([A-Z2-9]{4}-[A-Z2-9]{4})\b/;

describe('chat platform channels', () => {
  let cp: ChannelPlatform;
  let gw: string;
  let op: string;

  before(async () => {
    cp = await startChannelPlatform({ env: { GATEWAY_PAIRING_NOTICE_INTERVAL_MS: '0', GATEWAY_DELIVERY_ACK_WAIT_MS: '3000' } });
    gw = cp.gatewayUrl;
    op = await cp.tp.token('ops', { scope: 'operator' });
    for (const u of ['tess', 'sam', 'dee', 'wes']) assert.equal((await cp.talon(['users', 'add', u])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  const llmSaw = (text: string) => cp.llm.requests.filter((r) => JSON.stringify(r.body.messages).includes(text)).length;

  it('Telegram: an unknown sender gets a pairing code and nothing reaches the agent', async () => {
    const before = cp.llm.requests.length;
    const r = await cp.telegram.deliver(gw, cp.telegram.message(4242, 'let me in'));
    assert.equal(r.status, 200, r.text);
    const notice = await waitFor('the pairing notice', () => cp.telegram.sent.find((s) => s.chatId === 4242));
    assert.match(notice.text, CODE);
    assert.equal(cp.llm.requests.length, before, 'the agent never saw the unpaired message');
    assert.equal(llmSaw('let me in'), 0);
  });

  it('Telegram: after the operator approves the code, messages are answered through egress with the vault’s bot token', async () => {
    const code = CODE.exec(cp.telegram.sent.find((s) => s.chatId === 4242)!.text)![1]!;
    const ap = await cp.talon(['pairing', 'approve', code, '--user', 'tess']);
    assert.equal(ap.code, 0, ap.stderr);
    await waitFor('the "paired" notice', () => cp.telegram.sent.find((s) => s.chatId === 4242 && /now paired/.test(s.text)));
    const r = await cp.telegram.deliver(gw, cp.telegram.message(4242, 'what is two plus two'));
    assert.equal(r.status, 200);
    const reply = await waitFor('the reply', () => cp.telegram.sent.find((s) => s.text === 'echo: what is two plus two'));
    assert.equal(reply.chatId, 4242);
    // The fake accepted the call only because egress put the real token into the path.
    const call = cp.telegram.calls.at(-1)!;
    assert.ok(decodeURIComponent(call.path).includes(`/bot${cp.telegram.botToken}/`));
    // The orchestrator saw the user as the paired Talon user.
    const seen = cp.llm.requests.find((q) => JSON.stringify(q.body.messages).includes('what is two plus two'));
    assert.ok(seen);
  });

  it('Telegram: a retried update is accepted once (deduplicated by update_id)', async () => {
    const u = cp.telegram.message(4242, 'only once please');
    const a = await cp.telegram.deliver(gw, u);
    const b = await cp.telegram.deliver(gw, u);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(b.json.duplicate, true);
    await waitFor('the reply', () => cp.telegram.sent.find((s) => s.text === 'echo: only once please'));
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(cp.telegram.sent.filter((s) => s.text === 'echo: only once please').length, 1);
    assert.equal(llmSaw('only once please'), 1);
  });

  it('Slack: url_verification, pairing through the operator API, DM replies, retries deduplicated', async () => {
    const v = await cp.slack.deliver(gw, { token: 'x', challenge: 'chal-123', type: 'url_verification' });
    assert.equal(v.status, 200);
    assert.deepEqual(v.json, { challenge: 'chal-123' });
    const first = await cp.slack.deliver(gw, cp.slack.messageEvent('U0SAM', 'D0SAM', 'hello slack'));
    assert.equal(first.status, 200);
    await waitFor('the Slack pairing notice', () => cp.slack.posted.find((p) => p.channel === 'D0SAM' && CODE.test(p.text)));
    const pending = (await (await fetch(`${gw}/v1/admin/pairings`, { headers: { authorization: `Bearer ${op}` } })).json()) as any;
    const entry = pending.pending.find((p: any) => p.channel === 'slack' && p.account === `${cp.slack.teamId}.U0SAM`);
    assert.ok(entry, JSON.stringify(pending));
    const ap = await fetch(`${gw}/v1/admin/pairings/${entry.code}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${op}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'sam' }),
    });
    assert.equal(ap.status, 200, await ap.text());
    const ev = cp.slack.messageEvent('U0SAM', 'D0SAM', 'status report <!channel>');
    assert.equal((await cp.slack.deliver(gw, ev)).status, 200);
    // Slack retries with the same event (and a new signature): acknowledged, not re-run.
    const retry = await cp.slack.deliver(gw, ev, { retryNum: 1 });
    assert.equal(retry.json.duplicate, true);
    const reply = await waitFor('the Slack reply', () => cp.slack.posted.find((p) => p.text.startsWith('echo: status report')));
    assert.equal(reply.channel, 'D0SAM');
    assert.equal(reply.text, 'echo: status report &lt;!channel&gt;', 'model output cannot @-mention the channel');
    // Our own bot's messages come back as events too: never answered (no loops).
    const echo = await cp.slack.deliver(gw, cp.slack.messageEvent('U0SAM', 'D0SAM', 'echo: loop?', { botId: 'B0TALON' }));
    assert.equal(echo.json.ignored !== undefined, true);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(cp.slack.posted.filter((p) => p.text.startsWith('echo: status report')).length, 1);
    assert.equal(llmSaw('loop?'), 0);
  });

  it('Slack: a channel mention is answered in its thread', async () => {
    const ev = cp.slack.messageEvent('U0SAM', 'C0GENERAL', '<@U0BOT> summarize', { channelType: 'channel' });
    await cp.slack.deliver(gw, ev);
    const reply = await waitFor('the threaded reply', () => cp.slack.posted.find((p) => p.text === 'echo: summarize'));
    assert.equal(reply.channel, 'C0GENERAL');
    assert.equal(reply.threadTs, ev.event.ts);
  });

  it('Discord: PING, an inline pairing code, then slash commands answered in the channel (nonce-deduplicated)', async () => {
    const ping = await cp.discord.deliver(gw, cp.discord.ping());
    assert.deepEqual(ping.json, { type: 1 });
    const un = await cp.discord.deliver(gw, cp.discord.command('700000000000000001', '800000000000000001', 'hi'));
    assert.equal(un.json.type, 4);
    assert.equal(un.json.data.flags, 64, 'only the sender sees the code');
    const code = CODE.exec(un.json.data.content)![1]!;
    assert.equal((await cp.talon(['pairing', 'approve', code, '--user', 'dee'])).code, 0);
    const cmd = await cp.discord.deliver(gw, cp.discord.command('700000000000000001', '800000000000000001', 'roll a die'));
    assert.equal(cmd.json.type, 4);
    const msg = await waitFor('the Discord message', () => cp.discord.messages.find((m) => m.content === 'echo: roll a die'));
    assert.equal(msg.channelId, '800000000000000001');
    assert.equal(msg.nonce?.length, 25);
  });

  it('generic signed webhook: pairing code in the response, replies to the callback URL', async () => {
    const un = await cp.webhook.deliver(gw, { id: 'w-1', user: 'wes', text: 'ping', source: 'ci' });
    assert.equal(un.status, 202);
    assert.equal(un.json.status, 'pairing_required');
    assert.equal((await cp.talon(['pairing', 'approve', un.json.pairing_code, '--user', 'wes'])).code, 0);
    const ok = await cp.webhook.deliver(gw, { id: 'w-2', user: 'wes', text: 'deploy status?', source: 'ci', thread: 'deploys' });
    assert.equal(ok.status, 200);
    const cb = await waitFor('the callback', () => cp.webhook.received.find((r) => r.text === 'echo: deploy status?'));
    assert.equal(cb.thread, 'deploys');
    assert.match(cb.idempotencyKey, /^webhook-[0-9a-f]{32}\.0$/);
  });

  it('a platform that is down, then rate limiting, is retried with backoff until the reply is delivered once', async () => {
    cp.telegram.mode = { failNext: { count: 3, status: 502 } };
    await cp.telegram.deliver(gw, cp.telegram.message(4242, 'survive an outage'));
    await waitFor('the reply after the outage', () => cp.telegram.sent.find((s) => s.text === 'echo: survive an outage'), 30_000);
    assert.equal(cp.telegram.sent.filter((s) => s.text === 'echo: survive an outage').length, 1);
    const attempts = cp.telegram.calls.filter((c) => c.json?.text === 'echo: survive an outage');
    assert.equal(attempts.length, 4, 'three failures, then success');
    for (let i = 1; i < attempts.length; i++) assert.ok(attempts[i]!.at - attempts[i - 1]!.at >= 80, 'attempts are spaced by backoff');

    cp.slack.mode = { failNext: { count: 1, status: 429, retryAfterS: 1 } };
    const t0 = Date.now();
    await cp.slack.deliver(gw, cp.slack.messageEvent('U0SAM', 'D0SAM', 'rate limited'));
    await waitFor('the reply after 429', () => cp.slack.posted.find((p) => p.text === 'echo: rate limited'), 30_000);
    assert.ok(Date.now() - t0 >= 1000, 'Retry-After was honoured');
  });

  it('a reply produced while every gateway is down is delivered after restart; nothing is lost', async () => {
    cp.llm.behaviour = { delayMs: 2500 };
    const r = await cp.telegram.deliver(gw, cp.telegram.message(4242, 'across a restart'));
    assert.equal(r.status, 200);
    await cp.tp.platform.stopService('gateway');
    // The orchestrator answers while no gateway runs; JetStream keeps the reply.
    await waitFor('the LLM call', () => llmSaw('across a restart') > 0 || undefined, 15_000);
    await new Promise((res) => setTimeout(res, 3000));
    assert.equal(cp.telegram.sent.filter((s) => s.text === 'echo: across a restart').length, 0);
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
    await waitFor('the reply after restart', () => cp.telegram.sent.find((s) => s.text === 'echo: across a restart'), 30_000);
    cp.llm.behaviour = {};
  });

  it('a gateway killed mid-send resumes without a duplicate (Discord nonce)', async () => {
    cp.discord.mode = { delayMs: 1500 };
    await cp.discord.deliver(gw, cp.discord.command('700000000000000001', '800000000000000001', 'kill me mid-send'));
    await waitFor('the send to start', () => cp.discord.calls.find((c) => c.json?.content === 'echo: kill me mid-send'), 20_000);
    await cp.tp.platform.stopService('gateway', { kill: true });
    cp.discord.mode = {};
    cp.tp.platform.startService('gateway');
    await cp.tp.platform.waitHealthy(['gateway']);
    await waitFor(
      'the redelivered send',
      () => cp.discord.calls.filter((c) => c.json?.content === 'echo: kill me mid-send').length >= 2 || undefined,
      60_000,
    );
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(cp.discord.messages.filter((m) => m.content === 'echo: kill me mid-send').length, 1, 'one message despite two sends');
  });

  it('no platform credential ever appears in gateway logs or NATS messages', async () => {
    const secrets = [
      cp.telegram.botToken,
      cp.telegram.webhookSecret,
      cp.slack.botToken,
      cp.slack.signingSecret,
      cp.discord.botToken,
      cp.webhook.signingSecret,
      cp.webhook.callbackToken,
    ];
    const log = cp.tp.log('gateway') + cp.tp.log('orchestrator');
    for (const s of secrets) assert.ok(!log.includes(s), 'a platform credential is in a log');
    const jsm = await jetstreamManager(await cp.tp.admin());
    for (const stream of [STREAMS.outbound.name, STREAMS.audit.name]) {
      const info = await jsm.streams.info(stream);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (!m) continue;
        const text = Buffer.from(m.data).toString('latin1');
        for (const s of secrets) assert.ok(!text.includes(s), `${stream} #${seq} carries a credential`);
      }
    }
  });
});
