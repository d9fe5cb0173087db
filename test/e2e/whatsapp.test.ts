// WhatsApp Cloud API end to end: Meta's GET subscription handshake and signed notifications
// from a loopback fake reach the gateway, the verify token and X-Hub-Signature-256 are checked
// by the vault (through egress), senders are paired, each text message of a notification is one
// turn through the real pipeline, and replies go to the fake Graph API through egress with the
// access token injected from the vault (the gateway never holds it).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jetstreamManager } from '@nats-io/jetstream';
import { STREAMS } from '@talon/kit/subjects';
import { startChannelPlatform, type ChannelPlatform } from '../../packages/testkit/src/fake-platforms.ts';
import { FakeWhatsApp } from '../../packages/testkit/src/fake-whatsapp.ts';

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
const USER = '4915112345678';

describe('WhatsApp channel', () => {
  let cp: ChannelPlatform;
  let wa: FakeWhatsApp;
  let gw: string;

  before(async () => {
    wa = await new FakeWhatsApp().start();
    cp = await startChannelPlatform({
      env: {
        TALON_CHANNELS: 'whatsapp',
        TALON_WHATSAPP_API_URL: wa.apiUrl,
        GATEWAY_WHATSAPP_PHONE_NUMBER_ID: wa.phoneNumberId,
        GATEWAY_PAIRING_NOTICE_INTERVAL_MS: '0',
      },
      extraFakes: [wa],
      extraSecrets: wa.secrets(),
    });
    gw = cp.gatewayUrl;
    assert.equal((await cp.talon(['users', 'add', 'wanda'])).code, 0);
  });
  after(async () => {
    await cp?.stop();
    await wa?.close();
  });

  /** Turns whose new user message carries `text` (later turns see it again in their history). */
  const llmSaw = (text: string) =>
    cp.llm.requests.filter((r) => {
      const last = (r.body.messages as Array<{ role?: string; content?: unknown }> | undefined)?.at(-1);
      return last?.role === 'user' && JSON.stringify(last.content).includes(text);
    }).length;
  const sentTo = (to: string, body: string) => wa.sent.filter((s) => s.to === to && s.body === body);

  it('answers the subscription handshake only with the verify token the vault holds', async () => {
    const ok = await wa.verify(gw, { challenge: '1158201444' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.text, '1158201444', 'the challenge is echoed as the plain body');
    assert.match(ok.contentType, /^text\/plain/);
    for (const bad of [
      { token: `${wa.verifyToken}x` },
      { token: 'guess' },
      { token: wa.verifyToken, mode: 'unsubscribe' },
      { token: wa.verifyToken, challenge: '<b>x</b>' },
    ]) {
      const r = await wa.verify(gw, { ...bad, challenge: bad.challenge ?? '777' });
      assert.equal(r.status, 403, `${JSON.stringify(bad)} -> ${r.status} ${r.text}`);
      assert.ok(!r.text.includes('777'), 'a refused handshake never echoes the challenge');
    }
    const none = await fetch(`${gw}/hooks/whatsapp?hub.mode=subscribe&hub.challenge=9`);
    assert.equal(none.status, 403);
  });

  it('an unknown sender gets a pairing code on WhatsApp; after approval a message is one turn and one reply', async () => {
    const before = cp.llm.requests.length;
    const un = await wa.deliver(gw, wa.notification(USER, 'let me in'));
    assert.equal(un.status, 200, un.text);
    const notice = await waitFor('the pairing notice', () => wa.sent.find((s) => s.to === USER && CODE.test(s.body)));
    assert.equal(notice.phoneNumberId, wa.phoneNumberId);
    assert.equal(cp.llm.requests.length, before, 'the agent never saw the unpaired message');
    const code = CODE.exec(notice.body)![1]!;
    const ap = await cp.talon(['pairing', 'approve', code, '--user', 'wanda']);
    assert.equal(ap.code, 0, ap.stderr);
    await waitFor('the "paired" notice', () => wa.sent.find((s) => s.to === USER && /now paired/.test(s.body)));

    const r = await wa.deliver(gw, wa.notification(USER, 'what is two plus two'));
    assert.equal(r.status, 200, r.text);
    await waitFor('the reply', () => sentTo(USER, 'echo: what is two plus two')[0]);
    // The fake accepted the call only because egress put the vault's token in the header.
    const call = wa.calls.find((c) => c.json?.text?.body === 'echo: what is two plus two')!;
    assert.equal(call.headers.authorization, `Bearer ${wa.accessToken}`);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(sentTo(USER, 'echo: what is two plus two').length, 1, 'exactly one reply');
    assert.equal(llmSaw('what is two plus two'), 1, 'exactly one turn');
  });

  it('a notification carrying several messages runs each as a turn of its own', async () => {
    const r = await wa.deliver(gw, wa.notification(USER, ['first of two', 'second of two']));
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.messages, ['accepted', 'accepted']);
    await waitFor('both replies', () => sentTo(USER, 'echo: first of two').length + sentTo(USER, 'echo: second of two').length === 2);
    assert.equal(llmSaw('first of two'), 1);
    assert.equal(llmSaw('second of two'), 1);
  });

  it('refuses missing, forged and tampered signatures; a replayed message id is acknowledged, not re-run', async () => {
    const n = wa.notification(USER, 'forged hello');
    const raw = JSON.stringify(n);
    const refusals = [
      await wa.deliver(gw, n, { signature: null }),
      await wa.deliver(gw, n, { signature: wa.sign(raw, 'not-the-app-secret') }),
      await wa.deliver(gw, n, { signature: `sha256=${'0'.repeat(64)}` }),
      await wa.deliver(gw, n, { signature: 'garbage' }),
      // Signed, then altered on the way: the signature covers the raw bytes.
      await wa.deliver(gw, n, { signature: wa.sign(raw), raw: raw.replace('forged hello', 'forged hellO') }),
    ];
    for (const r of refusals) assert.equal(r.status, 401, r.text);
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(llmSaw('forged hel'), 0, 'nothing refused reached the agent');

    const once = wa.notification(USER, 'only once please');
    const a = await wa.deliver(gw, once);
    const b = await wa.deliver(gw, once);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(b.json.duplicate, true);
    await waitFor('the reply', () => sentTo(USER, 'echo: only once please')[0]);
    await new Promise((res) => setTimeout(res, 800));
    assert.equal(sentTo(USER, 'echo: only once please').length, 1);
    assert.equal(llmSaw('only once please'), 1);
  });

  it('delivery statuses and non-text messages are acknowledged and ignored', async () => {
    const st = await wa.deliver(gw, wa.status(USER, wa.sent[0]!.id));
    assert.equal(st.status, 200);
    assert.match(st.json.ignored, /statuses/);
    const img = wa.notification(USER, 'x');
    const msg = img.entry[0]!.changes[0]!.value.messages[0]! as Record<string, unknown>;
    msg.type = 'image';
    delete msg.text;
    msg.image = { id: '1234', mime_type: 'image/jpeg' };
    const r = await wa.deliver(gw, img);
    assert.equal(r.status, 200);
    assert.match(r.json.ignored, /image/);
  });

  it('a Graph API outage is retried until the reply is delivered once', async () => {
    wa.mode = { failNext: { count: 2, status: 503 } };
    await wa.deliver(gw, wa.notification(USER, 'survive an outage'));
    await waitFor('the reply after the outage', () => sentTo(USER, 'echo: survive an outage')[0], 30_000);
    assert.equal(sentTo(USER, 'echo: survive an outage').length, 1);
    assert.equal(wa.calls.filter((c) => c.json?.text?.body === 'echo: survive an outage').length, 3, 'two failures, then success');
  });

  it('the access token, app secret and verify token are never in logs or NATS messages', async () => {
    const secrets = [wa.accessToken, wa.appSecret, wa.verifyToken];
    const log = cp.tp.log('gateway') + cp.tp.log('orchestrator') + cp.tp.log('egress');
    for (const s of secrets) assert.ok(!log.includes(s), 'a WhatsApp credential is in a log');
    const jsm = await jetstreamManager(await cp.tp.admin());
    for (const stream of [STREAMS.inbound.name, STREAMS.outbound.name, STREAMS.audit.name]) {
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
