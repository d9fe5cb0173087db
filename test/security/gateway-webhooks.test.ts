// Forged and replayed platform webhooks, and senders nobody paired: the gateway
// must refuse them without the agent ever seeing a word. Signatures are checked
// by the vault through egress's EgressService (the gateway holds no key), so this
// suite needs EgressService.VerifyWebhook implemented.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign as edSign } from 'node:crypto';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';

describe('forged, replayed and unpaired webhooks', () => {
  let cp: ChannelPlatform;
  let gw: string;
  const agentCalls = () => cp.llm.requests.length;

  before(async () => {
    // Higher failure budget: this suite sends many refused requests on purpose.
    cp = await startChannelPlatform({ env: { GATEWAY_AUTH_FAILURES_PER_MIN: '1000' } });
    gw = cp.gatewayUrl;
    assert.equal((await cp.talon(['users', 'add', 'paula'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
  });

  it('Telegram: a wrong, missing or near-miss secret token is refused', async () => {
    const u = cp.telegram.message(5151, 'forged hello');
    const s = cp.telegram.webhookSecret;
    for (const secret of [null, 'x'.repeat(s.length), `${s}x`, s.slice(0, -1), s.toUpperCase()]) {
      const r = await cp.telegram.deliver(gw, u, { secret });
      assert.equal(r.status, 401, `secret ${secret === null ? '(none)' : 'variant'} -> ${r.status} ${r.text}`);
    }
    assert.equal(cp.telegram.sent.length, 0, 'no pairing notice for a forged update');
  });

  it('Slack: a signature made with another key, or for another body, is refused', async () => {
    const ev = cp.slack.messageEvent('U0EVE', 'D0EVE', 'forged');
    const wrongKey = await cp.slack.deliver(gw, ev, { secret: 'not-the-signing-secret' });
    assert.equal(wrongKey.status, 401);
    const ts = Math.floor(Date.now() / 1000);
    const raw = JSON.stringify(ev);
    const sig = cp.slack.sign(ts, raw);
    const tampered = await cp.slack.deliver(gw, null, { ts, signature: sig, raw: raw.replace('forged', 'FORGED') });
    assert.equal(tampered.status, 401, 'body changed after signing');
    const shifted = await cp.slack.deliver(gw, null, { ts: ts + 1, signature: sig, raw });
    assert.equal(shifted.status, 401, 'timestamp changed after signing');
    assert.equal(cp.slack.posted.length, 0);
  });

  it('Slack: a captured request replayed inside the window runs once; after the window it is refused', async () => {
    const ts = Math.floor(Date.now() / 1000);
    const raw = JSON.stringify(cp.slack.messageEvent('U0EVE', 'D0EVE', 'replay me'));
    const sig = cp.slack.sign(ts, raw);
    const first = await cp.slack.deliver(gw, null, { ts, signature: sig, raw });
    assert.equal(first.status, 200);
    const again = await cp.slack.deliver(gw, null, { ts, signature: sig, raw });
    assert.equal(again.status, 200);
    assert.equal(again.json.duplicate, true, 'the replay is acknowledged, not re-run');
    const old = Math.floor(Date.now() / 1000) - 600;
    const stale = await cp.slack.deliver(gw, null, { ts: old, signature: cp.slack.sign(old, raw), raw });
    assert.equal(stale.status, 401, 'a correctly signed but old request is refused');
    assert.match(stale.json.error.message, /replayed or delayed/);
  });

  it('Discord: a signature by another key or over another body is refused', async () => {
    const body = cp.discord.command('700000000000000009', '800000000000000009', 'forged');
    const ts = Math.floor(Date.now() / 1000);
    const raw = JSON.stringify(body);
    const other = generateKeyPairSync('ed25519').privateKey;
    const forged = await cp.discord.deliver(gw, null, {
      ts,
      raw,
      signature: edSign(null, Buffer.from(`${ts}${raw}`), other).toString('hex'),
    });
    assert.equal(forged.status, 401);
    const good = cp.discord.sign(ts, raw);
    const tampered = await cp.discord.deliver(gw, null, { ts, raw: raw.replace('forged', 'FORGED'), signature: good });
    assert.equal(tampered.status, 401);
    // Discord probes endpoints with bad signatures and expects 401 for them.
    const ping = await cp.discord.deliver(gw, null, { ts, raw: JSON.stringify(cp.discord.ping()), signature: '0'.repeat(128) });
    assert.equal(ping.status, 401);
  });

  it('generic webhook: a wrong HMAC key is refused', async () => {
    const raw = JSON.stringify({ id: 'g-1', user: 'mallory', text: 'forged' });
    const ts = Math.floor(Date.now() / 1000);
    const sig = `sha256=${createHmac('sha256', 'guess').update(`${ts}.${raw}`).digest('hex')}`;
    const r = await cp.webhook.deliver(gw, null, { raw, ts, signature: sig });
    assert.equal(r.status, 401);
  });

  it('nothing forged reached the agent', () => {
    // The only genuine message so far (the replayed Slack one) came from an unpaired user.
    assert.equal(agentCalls(), 0);
  });

  it('an unpaired chat user gets a code, never the agent, however often they write', async () => {
    const llmBefore = cp.llm.requests.length;
    for (let i = 0; i < 5; i++) {
      const r = await cp.telegram.deliver(gw, cp.telegram.message(6161, `please answer ${i}`));
      assert.equal(r.status, 200);
    }
    const d = await cp.discord.deliver(gw, cp.discord.command('700000000000000010', '800000000000000010', 'answer me'));
    assert.match(d.json.data.content, /pairing code/);
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(cp.llm.requests.length, llmBefore, 'the agent saw nothing');
    const notices = cp.telegram.sent.filter((s) => s.chatId === 6161);
    assert.equal(notices.length, 1, 'one notice per interval, not one per message (no amplification)');
    const codes = new Set(notices.map((n) => /([A-Z2-9]{4}-[A-Z2-9]{4})/.exec(n.text)![1]));
    assert.equal(codes.size, 1);
    // A guessed code cannot be approved for someone else's benefit without an operator, and a wrong one is refused.
    const bad = await cp.talon(['pairing', 'approve', 'AAAA-AAAA', '--user', 'paula']);
    assert.notEqual(bad.code, 0);
  });
});
