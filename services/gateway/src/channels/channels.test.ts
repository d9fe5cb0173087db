import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { TalonError } from '@talon/kit/errors';
import { WebhookScheme } from '@talon/proto';
import { discordNonce, discordSend, discordSignature, discordVerdict, parseDiscord } from './discord.ts';
import { parseSlack, slackEscape, slackSend, slackSignature, slackVerdict } from './slack.ts';
import { parseTelegram, telegramSend, telegramSignature, telegramVerdict } from './telegram.ts';
import { inboundIdFor, splitText, WebhookRejected } from './types.ts';
import { parseWebhook, webhookSend, webhookSignature } from './webhook.ts';

const raw = (v: unknown) => Buffer.from(JSON.stringify(v));
const NOW = 1_750_000_000;

describe('Telegram adapter', () => {
  it('checks the secret token header with the TOKEN scheme', () => {
    const c = telegramSignature({ 'x-telegram-bot-api-secret-token': 'abc_DEF-1' }, 'tg_secret');
    assert.equal(c.scheme, WebhookScheme.WEBHOOK_SCHEME_TOKEN);
    assert.equal(c.secretName, 'tg_secret');
    assert.equal(c.signature, 'abc_DEF-1');
    assert.throws(() => telegramSignature({}, 's'), WebhookRejected);
    assert.throws(() => telegramSignature({ 'x-telegram-bot-api-secret-token': 'has space' }, 's'), WebhookRejected);
  });

  it('normalises a private text message and ignores bots, edits and non-text', () => {
    const update = { update_id: 77, message: { from: { id: 42, is_bot: false, username: 'tess' }, chat: { id: 42 }, text: 'hello' } };
    const o = parseTelegram(raw(update));
    assert.equal(o.kind, 'message');
    if (o.kind !== 'message') return;
    assert.deepEqual(o.event, {
      channel: 'telegram',
      dedupeId: 'telegram:77',
      account: '42',
      displayName: 'tess',
      threadId: 'chat:42',
      text: 'hello',
    });
    assert.equal(parseTelegram(raw({ update_id: 1, edited_message: {} })).kind, 'ignore');
    assert.equal(parseTelegram(raw({ ...update, message: { ...update.message, from: { id: 1, is_bot: true } } })).kind, 'ignore');
    assert.equal(parseTelegram(raw({ ...update, message: { ...update.message, text: undefined, sticker: {} } })).kind, 'ignore');
    assert.equal(parseTelegram(raw({ update_id: 1.5 })).kind, 'respond');
    assert.throws(() => parseTelegram(Buffer.from('{')), TalonError);
  });

  it('sends plain text to the chat with the bot token as a path placeholder', () => {
    const calls = telegramSend('https://api.telegram.org/', 'telegram_bot_token', 'chat:-1001', 'x'.repeat(5000));
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.url, 'https://api.telegram.org/bot{{secret:telegram_bot_token}}/sendMessage');
    const body = JSON.parse(calls[0]!.body);
    assert.equal(body.chat_id, -1001);
    assert.equal(body.parse_mode, undefined);
    assert.throws(() => telegramSend('https://t', 's', 'C123', 'x'));
  });

  it('classifies responses', () => {
    assert.deepEqual(telegramVerdict(200, '{"ok":true,"result":{"message_id":5}}'), { ok: true, messageId: '5' });
    const rl = telegramVerdict(429, '{"ok":false,"parameters":{"retry_after":3}}');
    assert.equal(rl.ok, false);
    assert.ok(!rl.ok && rl.retry && rl.afterMs === 3000);
    assert.deepEqual(telegramVerdict(502, 'bad gateway'), { ok: false, retry: true, code: 'http_502' });
    assert.deepEqual(telegramVerdict(403, '{"ok":false}'), { ok: false, retry: false, code: 'http_403' });
  });
});

describe('Slack adapter', () => {
  const body = Buffer.from('{"type":"event_callback"}');
  const sig = (ts: number) => `v0=${createHmac('sha256', 'k').update(`v0:${ts}:${body.toString()}`).digest('hex')}`;

  it('builds the exact v0 message and enforces the replay window', () => {
    const c = slackSignature(
      { 'x-slack-request-timestamp': String(NOW), 'x-slack-signature': sig(NOW) },
      body,
      NOW + 10,
      300,
      'slack_signing_secret',
    );
    assert.equal(c.scheme, WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX);
    assert.equal(c.message.toString(), `v0:${NOW}:{"type":"event_callback"}`);
    assert.equal(c.signature, sig(NOW).slice(3));
    assert.throws(
      () => slackSignature({ 'x-slack-request-timestamp': String(NOW - 301), 'x-slack-signature': sig(NOW) }, body, NOW, 300, 's'),
      /replayed/,
    );
    assert.throws(
      () => slackSignature({ 'x-slack-request-timestamp': String(NOW + 301), 'x-slack-signature': sig(NOW) }, body, NOW, 300, 's'),
      WebhookRejected,
    );
    assert.throws(
      () => slackSignature({ 'x-slack-request-timestamp': String(NOW), 'x-slack-signature': 'v1=abc' }, body, NOW, 300, 's'),
      WebhookRejected,
    );
    assert.throws(() => slackSignature({ 'x-slack-signature': sig(NOW) }, body, NOW, 300, 's'), WebhookRejected);
  });

  it('answers url_verification and normalises messages, threads and mentions', () => {
    assert.deepEqual(parseSlack(raw({ type: 'url_verification', challenge: 'c1' })), {
      kind: 'respond',
      status: 200,
      body: { challenge: 'c1' },
    });
    const ev = (e: Record<string, unknown>) =>
      raw({
        type: 'event_callback',
        team_id: 'T1',
        event_id: 'Ev1',
        event: { type: 'message', user: 'U1', channel: 'D1', ts: '1.000100', text: 'hi', channel_type: 'im', ...e },
      });
    const dm = parseSlack(ev({}));
    assert.ok(dm.kind === 'message');
    if (dm.kind === 'message')
      assert.deepEqual(dm.event, {
        channel: 'slack',
        dedupeId: 'slack:T1:D1:1.000100',
        account: 'T1.U1',
        displayName: 'U1',
        threadId: 'D1',
        text: 'hi',
      });
    const ch = parseSlack(ev({ channel: 'C9', channel_type: 'channel', type: 'app_mention', text: '<@UBOT> what time is it' }));
    assert.ok(ch.kind === 'message' && ch.event.threadId === 'C9:1.000100' && ch.event.text === 'what time is it');
    assert.equal(parseSlack(ev({ bot_id: 'B1' })).kind, 'ignore');
    assert.equal(parseSlack(ev({ subtype: 'message_changed' })).kind, 'ignore');
    assert.equal(parseSlack(ev({ user: 'u1; drop' })).kind, 'ignore');
  });

  it('escapes control characters so model output cannot mention @channel', () => {
    assert.equal(slackEscape('<!channel> & <@U1>'), '&lt;!channel&gt; &amp; &lt;@U1&gt;');
    const [call] = slackSend('https://slack.com/api', 'slack_bot_token', 'C9:1.000100', '<!here> hi');
    assert.equal(call!.url, 'https://slack.com/api/chat.postMessage');
    assert.equal(call!.headers.authorization, 'Bearer {{secret:slack_bot_token}}');
    assert.deepEqual(JSON.parse(call!.body), { channel: 'C9', text: '&lt;!here&gt; hi', thread_ts: '1.000100', unfurl_links: false });
  });

  it('classifies responses, including ok:false bodies', () => {
    assert.deepEqual(slackVerdict(200, '{"ok":true,"ts":"1.2"}'), { ok: true, messageId: '1.2' });
    assert.deepEqual(slackVerdict(200, '{"ok":false,"error":"channel_not_found"}'), { ok: false, retry: false, code: 'channel_not_found' });
    assert.deepEqual(slackVerdict(200, '{"ok":false,"error":"ratelimited"}', '7'), {
      ok: false,
      retry: true,
      afterMs: 7000,
      code: 'ratelimited',
    });
    assert.deepEqual(slackVerdict(503, ''), { ok: false, retry: true, afterMs: undefined, code: 'http_503' });
  });
});

describe('Discord adapter', () => {
  it('signs timestamp + body with Ed25519 and enforces the window', () => {
    const c = discordSignature(
      { 'x-signature-ed25519': 'AB'.repeat(64), 'x-signature-timestamp': String(NOW) },
      Buffer.from('{}'),
      NOW,
      300,
      'discord_public_key',
    );
    assert.equal(c.scheme, WebhookScheme.WEBHOOK_SCHEME_ED25519);
    assert.equal(c.message.toString(), `${NOW}{}`);
    assert.equal(c.signature, 'ab'.repeat(64));
    assert.throws(
      () =>
        discordSignature(
          { 'x-signature-ed25519': 'ab'.repeat(64), 'x-signature-timestamp': String(NOW - 1000) },
          Buffer.from('{}'),
          NOW,
          300,
          'k',
        ),
      WebhookRejected,
    );
    assert.throws(
      () => discordSignature({ 'x-signature-ed25519': 'zz', 'x-signature-timestamp': String(NOW) }, Buffer.from('{}'), NOW, 300, 'k'),
      WebhookRejected,
    );
  });

  it('answers PING, normalises slash commands', () => {
    assert.deepEqual(parseDiscord(raw({ type: 1 })), { kind: 'respond', status: 200, body: { type: 1 } });
    const o = parseDiscord(
      raw({
        id: '123',
        type: 2,
        channel_id: '55',
        member: { user: { id: '77', username: 'dee' } },
        data: { name: 'ask', options: [{ name: 'q', value: 'why?' }] },
      }),
    );
    assert.ok(o.kind === 'message');
    if (o.kind === 'message')
      assert.deepEqual(o.event, {
        channel: 'discord',
        dedupeId: 'discord:123',
        account: '77',
        displayName: 'dee',
        threadId: '55',
        text: 'why?',
      });
    assert.equal(parseDiscord(raw({ id: '123', type: 3, channel_id: '55' })).kind, 'respond');
  });

  it('posts with a Bot placeholder, no mentions, and a stable nonce per part', () => {
    const calls = discordSend('https://discord.com/api/v10', 'discord_bot_token', '55', 'y'.repeat(2500), 'discord-abc');
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.headers.authorization, 'Bot {{secret:discord_bot_token}}');
    const b = JSON.parse(calls[1]!.body);
    assert.equal(b.nonce, discordNonce('discord-abc', 1));
    assert.equal(b.nonce.length, 25);
    assert.equal(b.enforce_nonce, true);
    assert.deepEqual(b.allowed_mentions, { parse: [] });
    assert.deepEqual(discordVerdict(429, '{"retry_after":1.5}'), { ok: false, retry: true, afterMs: 1500, code: 'rate_limited' });
    assert.deepEqual(discordVerdict(404, ''), { ok: false, retry: false, code: 'http_404' });
  });
});

describe('generic webhook adapter', () => {
  it('signs "<ts>.<body>" and validates fields', () => {
    const c = webhookSignature(
      { 'x-talon-signature': `sha256=${'a'.repeat(64)}`, 'x-talon-timestamp': String(NOW) },
      Buffer.from('{"a":1}'),
      NOW,
      300,
      'wh',
    );
    assert.equal(c.message.toString(), `${NOW}.{"a":1}`);
    const o = parseWebhook(raw({ id: 'm-1', user: 'ops', text: 'deploy status?', source: 'ci' }));
    assert.ok(
      o.kind === 'message' && o.event.account === 'ci.ops' && o.event.dedupeId === 'webhook:ci:m-1' && o.event.threadId === 'ci.ops',
    );
    assert.equal(parseWebhook(raw({ id: 'm-1', user: 'a b', text: 'x' })).kind, 'respond');
    assert.equal(parseWebhook(raw({ id: 'm-1', user: 'a', text: '' })).kind, 'respond');
    const [call] = webhookSend('https://hooks.example/talon', 'cb', 'ci.ops', 'done', 'webhook-1');
    assert.equal(call!.headers['idempotency-key'], 'webhook-1.0');
  });
});

describe('helpers', () => {
  it('inbound ids are deterministic per platform message', () => {
    assert.equal(inboundIdFor('telegram', 'telegram:1'), inboundIdFor('telegram', 'telegram:1'));
    assert.notEqual(inboundIdFor('telegram', 'telegram:1'), inboundIdFor('telegram', 'telegram:2'));
    assert.match(inboundIdFor('slack', 'slack:T:C:1.2'), /^slack-[0-9a-f]{32}$/);
  });

  it('splits long text at boundaries without breaking surrogate pairs', () => {
    assert.deepEqual(splitText('short', 10), ['short']);
    assert.deepEqual(splitText('', 10), ['']);
    const parts = splitText('aaaa bbbb cccc dddd', 10);
    assert.ok(parts.every((p) => p.length <= 10));
    assert.equal(parts.join(' '), 'aaaa bbbb cccc dddd');
    const emoji = '😀'.repeat(10);
    const ep = splitText(emoji, 5);
    assert.ok(ep.every((p) => p.length <= 5 && !/[\ud800-\udbff]$/.test(p)));
    assert.equal(ep.join(''), emoji);
  });
});
