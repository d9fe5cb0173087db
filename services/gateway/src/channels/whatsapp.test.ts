import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { ConfigError } from '@talon/kit/config';
import { TalonError } from '@talon/kit/errors';
import { WebhookScheme } from '@talon/proto';
import { neededSecrets } from '../channel-secrets.ts';
import { loadGatewayConfig } from '../config.ts';
import { adapters } from './index.ts';
import { HandshakeRefused, WebhookRejected } from './types.ts';
import { parseWhatsApp, WHATSAPP_MAX_BATCH, whatsappSend, whatsappSignature, whatsappVerdict, whatsappVerification } from './whatsapp.ts';

const raw = (v: unknown) => Buffer.from(JSON.stringify(v));
const PHONE = '106540352242922';

function textMessage(from: string, id: string, body: string) {
  return { from, id, timestamp: '1750000000', type: 'text', text: { body } };
}

function notification(messages: unknown[], opts: { contacts?: unknown[]; phone?: string; statuses?: unknown[] } = {}) {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '1029384756',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550001111', phone_number_id: opts.phone ?? PHONE },
              ...(opts.contacts ? { contacts: opts.contacts } : {}),
              ...(messages.length > 0 ? { messages } : {}),
              ...(opts.statuses ? { statuses: opts.statuses } : {}),
            },
          },
        ],
      },
    ],
  };
}

describe('WhatsApp adapter', () => {
  it('checks X-Hub-Signature-256 over the exact raw body with the HMAC scheme', () => {
    const body = raw(notification([]));
    const hex = createHmac('sha256', 'app-secret').update(body).digest('hex');
    const c = whatsappSignature({ 'x-hub-signature-256': `sha256=${hex}` }, body, 'wa_app_secret');
    assert.equal(c.scheme, WebhookScheme.WEBHOOK_SCHEME_HMAC_SHA256_HEX);
    assert.equal(c.secretName, 'wa_app_secret');
    assert.equal(c.signature, hex, 'the sha256= prefix is stripped');
    assert.ok(c.message.equals(body), 'the signed message is the raw body, byte for byte');
    for (const bad of [undefined, '', hex, `sha1=${hex}`, `sha256=${hex.toUpperCase()}`, `sha256=${hex}0`, `sha256=${hex.slice(1)}`]) {
      const h = bad === undefined ? {} : { 'x-hub-signature-256': bad };
      assert.throws(() => whatsappSignature(h, body, 's'), WebhookRejected, String(bad));
    }
  });

  it('the handshake compares the verify token in the vault (TOKEN scheme) and echoes only a well-formed challenge', () => {
    const q = new URLSearchParams({ 'hub.mode': 'subscribe', 'hub.verify_token': 'my-verify_token.1', 'hub.challenge': '1158201444' });
    const v = whatsappVerification(q, 'wa_verify');
    assert.equal(v.challenge, '1158201444');
    assert.deepEqual(
      { ...v.check, message: v.check.message.length },
      { secretName: 'wa_verify', scheme: WebhookScheme.WEBHOOK_SCHEME_TOKEN, message: 0, signature: 'my-verify_token.1' },
    );
    const refused = (over: Record<string, string | null>) => {
      const p = new URLSearchParams(q);
      for (const [k, val] of Object.entries(over))
        if (val === null) p.delete(k);
        else p.set(k, val);
      assert.throws(() => whatsappVerification(p, 'wa_verify'), HandshakeRefused, JSON.stringify(over));
    };
    refused({ 'hub.mode': 'unsubscribe' });
    refused({ 'hub.mode': null });
    refused({ 'hub.verify_token': null });
    refused({ 'hub.verify_token': '' });
    refused({ 'hub.verify_token': 'has space' });
    refused({ 'hub.verify_token': 'x'.repeat(257) });
    refused({ 'hub.challenge': null });
    // The challenge is echoed as the body: markup or a header injection never is.
    refused({ 'hub.challenge': '<script>alert(1)</script>' });
    refused({ 'hub.challenge': 'a\r\nset-cookie: x=1' });
    assert.equal(new HandshakeRefused('x').httpStatus, 403);
    // Arbitrary query strings: a check or a refusal, never another exception.
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const pieces = [
      'hub.mode',
      'hub.verify_token',
      'hub.challenge',
      'subscribe',
      '=',
      '&',
      '%00',
      '%E2%80%AE',
      '%ZZ',
      '<',
      'x'.repeat(300),
      '1',
    ];
    for (let i = 0; i < 2000; i++) {
      const qs = Array.from({ length: Math.floor(rnd() * 12) }, () => pieces[Math.floor(rnd() * pieces.length)]).join('');
      try {
        const r = whatsappVerification(new URLSearchParams(qs), 'v');
        assert.match(r.challenge, /^[A-Za-z0-9_.-]{1,256}$/);
      } catch (err) {
        assert.ok(err instanceof HandshakeRefused, `${qs}: ${String(err)}`);
      }
    }
  });

  it('normalises a text message: wamid dedupe, wa_id account and thread, profile name', () => {
    const o = parseWhatsApp(
      raw(
        notification([textMessage('16505551234', 'wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=', 'hello')], {
          contacts: [{ profile: { name: 'Wanda' }, wa_id: '16505551234' }],
        }),
      ),
      PHONE,
    );
    assert.equal(o.kind, 'message');
    if (o.kind !== 'message') return;
    assert.deepEqual(o.event, {
      channel: 'whatsapp',
      dedupeId: 'whatsapp:wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=',
      account: '16505551234',
      displayName: 'Wanda',
      threadId: '16505551234',
      text: 'hello',
    });
  });

  it('returns every text message of a batch, each with its own sender and name, skipping other types', () => {
    const o = parseWhatsApp(
      raw({
        object: 'whatsapp_business_account',
        entry: [
          {
            id: '1',
            changes: [
              {
                field: 'messages',
                value: {
                  metadata: { phone_number_id: PHONE },
                  contacts: [
                    { profile: { name: 'Ann' }, wa_id: '4915112345678' },
                    { profile: { name: 'Bob' }, wa_id: '447700900123' },
                  ],
                  messages: [
                    textMessage('4915112345678', 'wamid.1', 'one'),
                    { from: '447700900123', id: 'wamid.img', type: 'image', image: { id: '9' } },
                    textMessage('447700900123', 'wamid.2', 'two'),
                  ],
                },
              },
            ],
          },
          { id: '2', changes: [{ field: 'messages', value: { messages: [textMessage('4915112345678', 'wamid.3', 'three')] } }] },
        ],
      }),
      PHONE,
    );
    assert.equal(o.kind, 'messages');
    if (o.kind !== 'messages') return;
    assert.deepEqual(
      o.events.map((e) => [e.dedupeId, e.account, e.displayName, e.text]),
      [
        ['whatsapp:wamid.1', '4915112345678', 'Ann', 'one'],
        ['whatsapp:wamid.2', '447700900123', 'Bob', 'two'],
        ['whatsapp:wamid.3', '4915112345678', '4915112345678', 'three'],
      ],
    );
    const many = Array.from({ length: WHATSAPP_MAX_BATCH + 20 }, (_, i) => textMessage('16505551234', `wamid.${i}`, `m${i}`));
    const big = parseWhatsApp(raw(notification(many)), PHONE);
    assert.ok(big.kind === 'messages' && big.events.length === WHATSAPP_MAX_BATCH);
  });

  it('ignores statuses, other types, other phone numbers, other objects, with a reason', () => {
    const ignored = (v: unknown, reason: RegExp) => {
      const o = parseWhatsApp(raw(v), PHONE);
      assert.equal(o.kind, 'ignore', JSON.stringify(v));
      if (o.kind === 'ignore') assert.match(o.reason, reason);
    };
    ignored(notification([], { statuses: [{ id: 'wamid.1', status: 'delivered', recipient_id: '16505551234' }] }), /statuses/);
    ignored(notification([{ from: '16505551234', id: 'wamid.1', type: 'image', image: { id: '1' } }]), /image messages not handled/);
    ignored(notification([{ from: '16505551234', id: 'wamid.1', type: 'reaction', reaction: { emoji: 'x' } }]), /reaction/);
    ignored(notification([textMessage('16505551234', 'wamid.1', 'hi')], { phone: '999' }), /another phone number/);
    ignored(notification([textMessage('16505551234', 'wamid.1', '   ')]), /empty/);
    ignored({ object: 'page', entry: [] }, /object page/);
    ignored(
      { object: 'whatsapp_business_account', entry: [{ changes: [{ field: 'account_update', value: {} }] }] },
      /not a messages change/,
    );
  });

  it('survives hostile payloads: bad ids, senders, types, shapes and prototype keys', () => {
    const hostile: unknown[] = [
      notification([textMessage('+16505551234', 'wamid.1', 'hi')]),
      notification([textMessage('1650555123456789012345', 'wamid.1', 'hi')]),
      notification([textMessage('16505551234', '', 'hi')]),
      notification([textMessage('16505551234', 'wamid 1', 'hi')]),
      notification([textMessage('16505551234', 'x'.repeat(300), 'hi')]),
      notification([textMessage('../../etc', 'wamid.1', 'hi')]),
      notification([{ from: 16505551234, id: 'wamid.1', type: 'text', text: { body: 'hi' } }]),
      notification([{ from: '16505551234', id: 'wamid.1', type: 'text', text: 'hi' }]),
      notification([{ from: '16505551234', id: 'wamid.1', type: 'text', text: { body: ['hi'] } }]),
      notification([null, 7, 'x', []]),
      { object: 'whatsapp_business_account', entry: { changes: [] } },
      { object: 'whatsapp_business_account', entry: [null, { changes: 'x' }, { changes: [null, { value: [] }] }] },
      JSON.parse(
        '{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","__proto__":{"value":{"messages":[]}}}]}]}',
      ),
    ];
    for (const h of hostile) assert.equal(parseWhatsApp(raw(h), PHONE).kind, 'ignore', JSON.stringify(h).slice(0, 200));
    assert.throws(() => parseWhatsApp(Buffer.from('{'), PHONE), TalonError);
    assert.throws(() => parseWhatsApp(Buffer.from('[]'), PHONE), TalonError);
    // A name is informational: bounded, and a missing profile falls back to the number.
    const long = parseWhatsApp(
      raw(
        notification([textMessage('16505551234', 'wamid.1', 'hi')], {
          contacts: [{ profile: { name: 'N'.repeat(200) }, wa_id: '16505551234' }],
        }),
      ),
      PHONE,
    );
    assert.ok(long.kind === 'message' && long.event.displayName.length === 64);
  });

  it('sends plain text to the wa_id from the configured number with the access token as a bearer placeholder', () => {
    const calls = whatsappSend('https://graph.facebook.com/v21.0/', PHONE, 'whatsapp_access_token', '16505551234', 'x'.repeat(5000));
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.url, `https://graph.facebook.com/v21.0/${PHONE}/messages`);
    assert.equal(calls[0]!.headers.authorization, 'Bearer {{secret:whatsapp_access_token}}');
    const body = JSON.parse(calls[0]!.body);
    assert.deepEqual(
      { ...body, text: { ...body.text, body: body.text.body.length } },
      {
        messaging_product: 'whatsapp',
        recipient_type: 'individual',
        to: '16505551234',
        type: 'text',
        text: { preview_url: false, body: 4096 },
      },
    );
    assert.throws(() => whatsappSend('https://g', PHONE, 's', 'chat:1', 'x'));
    assert.throws(() => whatsappSend('https://g', undefined, 's', '16505551234', 'x'));
    assert.throws(() => whatsappSend('https://g', '12/../34', 's', '16505551234', 'x'));
  });

  it('classifies Graph API responses: 429/5xx and throughput errors retry, other 4xx are permanent', () => {
    assert.deepEqual(whatsappVerdict(200, '{"messaging_product":"whatsapp","contacts":[],"messages":[{"id":"wamid.X"}]}'), {
      ok: true,
      messageId: 'wamid.X',
    });
    assert.deepEqual(whatsappVerdict(429, '{}', '3'), { ok: false, retry: true, afterMs: 3000, code: 'rate_limited' });
    assert.deepEqual(whatsappVerdict(400, '{"error":{"code":131056,"message":"pair rate limit"}}'), {
      ok: false,
      retry: true,
      afterMs: undefined,
      code: 'rate_limited',
    });
    assert.deepEqual(whatsappVerdict(503, 'oops'), { ok: false, retry: true, afterMs: undefined, code: 'http_503' });
    assert.deepEqual(whatsappVerdict(400, '{"error":{"code":131047,"message":"Re-engagement message"}}'), {
      ok: false,
      retry: false,
      code: 'outside_24h_window',
    });
    assert.deepEqual(whatsappVerdict(401, '{"error":{"code":190,"message":"Invalid OAuth access token"}}'), {
      ok: false,
      retry: false,
      code: 'graph_190',
    });
    assert.deepEqual(whatsappVerdict(404, 'not json'), { ok: false, retry: false, code: 'http_404' });
  });

  it('is configured with a phone number id (required when enabled) and names three vault secrets', () => {
    assert.throws(
      () => loadGatewayConfig({ TALON_CHANNELS: 'whatsapp' }),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /GATEWAY_WHATSAPP_PHONE_NUMBER_ID/);
        return true;
      },
    );
    assert.throws(() => loadGatewayConfig({ TALON_CHANNELS: 'whatsapp', GATEWAY_WHATSAPP_PHONE_NUMBER_ID: '+1555' }), ConfigError);
    const cfg = loadGatewayConfig({ TALON_CHANNELS: 'whatsapp', GATEWAY_WHATSAPP_PHONE_NUMBER_ID: PHONE });
    assert.equal(cfg.whatsappApiUrl, 'https://graph.facebook.com/v21.0');
    assert.deepEqual(
      neededSecrets(['whatsapp'], cfg).map((n) => `${n.secret}:${n.setting}`),
      [
        'whatsapp_access_token:GATEWAY_WHATSAPP_ACCESS_TOKEN_SECRET',
        'whatsapp_app_secret:GATEWAY_WHATSAPP_APP_SECRET',
        'whatsapp_verify_token:GATEWAY_WHATSAPP_VERIFY_TOKEN_SECRET',
      ],
    );
    const a = adapters(cfg).whatsapp;
    assert.ok(a.handshake, 'the adapter answers the GET handshake');
    assert.equal(a.send('16505551234', 'hi', 'id')[0]!.url, `https://graph.facebook.com/v21.0/${PHONE}/messages`);
    assert.equal(
      a.signature({ 'x-hub-signature-256': `sha256=${'a'.repeat(64)}` }, Buffer.from('{}'), 0).secretName,
      'whatsapp_app_secret',
    );
  });
});
