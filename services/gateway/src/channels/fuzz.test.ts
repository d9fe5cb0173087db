// Deterministic fuzzing of every adapter's webhook parsing and signature-input
// building: arbitrary bodies and headers must produce an outcome or a TalonError,
// never another exception (which would be a 500 or a crash in the gateway).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TalonError } from '@talon/kit/errors';
import { adapters } from './index.ts';
import { CHANNELS } from './types.ts';

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const cfg = {
  replayWindowS: 300,
  telegramApiUrl: 'https://api.telegram.org',
  slackApiUrl: 'https://slack.com/api',
  discordApiUrl: 'https://discord.com/api/v10',
  webhookCallbackUrl: 'https://cb.example/x',
  telegramBotTokenSecret: 'a',
  telegramWebhookSecret: 'b',
  slackBotTokenSecret: 'c',
  slackSigningSecret: 'd',
  discordBotTokenSecret: 'e',
  discordPublicKeySecret: 'f',
  webhookSigningSecret: 'g',
  webhookCallbackSecret: 'h',
  matrixHomeserverUrl: 'https://matrix.example.org',
  matrixAccessTokenSecret: 'm',
  whatsappApiUrl: 'https://graph.facebook.com/v21.0',
  whatsappPhoneNumberId: '106540352242922',
  whatsappAccessTokenSecret: 'i',
  whatsappAppSecret: 'j',
  whatsappVerifyTokenSecret: 'k',
  mattermostUrl: 'https://chat.example.com',
  mattermostBotTokenSecret: 'l',
};

function value(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 6 : 9));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return [0, -1, 1.5, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 1e308, 42][Math.floor(r() * 7)];
    case 3:
      return [
        '',
        'hi',
        'x'.repeat(Math.floor(r() * 5000)),
        '\u0000\ud800',
        '<!channel>',
        'C123',
        'U1',
        '1.000100',
        'message',
        'event_callback',
        'url_verification',
      ][Math.floor(r() * 11)];
    case 4:
      return String(Math.floor(r() * 1e12));
    case 5:
      return 'talon_pat_' + '0'.repeat(64);
    case 6:
      return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth + 1));
    default: {
      const keys = [
        'update_id',
        'message',
        'from',
        'chat',
        'id',
        'text',
        'type',
        'event',
        'team_id',
        'user',
        'channel',
        'ts',
        'thread_ts',
        'member',
        'data',
        'options',
        'value',
        'channel_id',
        'source',
        'thread',
        'is_bot',
        'bot_id',
        'subtype',
        'challenge',
        'object',
        'entry',
        'changes',
        'field',
        'messages',
        'contacts',
        'wa_id',
        'body',
        '__proto__',
        'constructor',
      ];
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 6); i > 0; i--) o[keys[Math.floor(r() * keys.length)]!] = value(r, depth + 1);
      return o;
    }
  }
}

const TEMPLATES: Record<string, unknown> = {
  telegram: {
    update_id: 7,
    message: { message_id: 1, from: { id: 42, is_bot: false, first_name: 'T' }, chat: { id: 42, type: 'private' }, text: 'hello' },
  },
  slack: {
    type: 'event_callback',
    team_id: 'T1',
    event_id: 'Ev1',
    event: { type: 'message', user: 'U1', channel: 'C1', ts: '1.000100', text: 'hi', channel_type: 'channel' },
  },
  discord: {
    id: '123',
    type: 2,
    channel_id: '55',
    member: { user: { id: '77', username: 'dee' } },
    data: { name: 'ask', options: [{ name: 'q', value: 'why?' }] },
  },
  webhook: { id: 'm-1', user: 'ops', text: 'hi', source: 'ci', thread: 't1' },
  // Matrix has no webhook (refused, ignored); its /sync answers are fuzzed in matrix.test.ts.
  matrix: { type: 'm.room.message', sender: '@a:x', event_id: '$e', content: { msgtype: 'm.text', body: 'hi' } },
  // Mattermost has no webhook either (refused, ignored); its WebSocket frames are tested in mattermost.test.ts.
  mattermost: { event: 'posted', data: { channel_type: 'O', post: '{"id":"p","message":"hi"}' }, seq: 1 },
  whatsapp: {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '1',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550001111', phone_number_id: '106540352242922' },
              contacts: [{ profile: { name: 'Wanda' }, wa_id: '16505551234' }],
              messages: [
                { from: '16505551234', id: 'wamid.A1', timestamp: '1750000000', type: 'text', text: { body: 'hi' } },
                { from: '16505551234', id: 'wamid.A2', timestamp: '1750000001', type: 'text', text: { body: 'again' } },
              ],
            },
          },
        ],
      },
    ],
  },
};

/** A valid payload with a few leaves replaced by random values (reaches deep code paths). */
function mutate(v: unknown, r: () => number): unknown {
  if (typeof v !== 'object' || v === null) return r() < 0.15 ? value(r, 3) : v;
  if (Array.isArray(v)) return v.map((x) => mutate(x, r));
  const o: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (r() > 0.05) o[k] = mutate(x, r);
  return o;
}

function body(r: () => number, ch: string): Buffer {
  if (r() < 0.5) return Buffer.from(JSON.stringify(mutate(TEMPLATES[ch], r)));
  const k = r();
  if (k < 0.1) return Buffer.from(Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256)));
  if (k < 0.2) return Buffer.from(JSON.stringify(value(r, 0)).slice(0, Math.floor(r() * 100)));
  return Buffer.from(JSON.stringify(value(r, 0)) ?? 'null');
}

describe('webhook adapters under fuzzing', () => {
  it('20k deterministic cases: an outcome or a TalonError, nothing else', () => {
    const r = mulberry32(0x7a10);
    const a = adapters(cfg);
    const headerNames = [
      'x-telegram-bot-api-secret-token',
      'x-slack-request-timestamp',
      'x-slack-signature',
      'x-signature-ed25519',
      'x-signature-timestamp',
      'x-talon-signature',
      'x-talon-timestamp',
      'x-hub-signature-256',
    ];
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const ch = CHANNELS[i % CHANNELS.length]!;
      const headers: Record<string, string | string[]> = {};
      for (const h of headerNames) {
        if (r() < 0.6) {
          const v = [
            String(1_750_000_000 + Math.floor(r() * 1000) - 500),
            'v0=' + 'a'.repeat(64),
            'sha256=' + 'f'.repeat(64),
            'ab'.repeat(64),
            '',
            'x'.repeat(300),
            'tok_en-1',
          ][Math.floor(r() * 7)]!;
          headers[h] = r() < 0.05 ? [v, v] : v;
        }
      }
      const raw = body(r, ch);
      try {
        a[ch].signature(headers, raw, 1_750_000_000);
      } catch (err) {
        assert.ok(err instanceof TalonError, `signature(${ch}) threw ${String(err)}`);
      }
      try {
        const o = a[ch].parse(raw);
        outcomes.set(`${ch}:${o.kind}`, (outcomes.get(`${ch}:${o.kind}`) ?? 0) + 1);
        for (const ev of o.kind === 'message' ? [o.event] : o.kind === 'messages' ? o.events : []) {
          const calls = a[ch].send(ev.threadId, ev.text, 'id-1');
          for (const c of calls) assert.ok(c.url.startsWith('https://'));
        }
      } catch (err) {
        assert.ok(err instanceof TalonError, `parse(${ch}) threw ${String((err as Error).stack)}`);
      }
    }
    assert.ok(outcomes.size >= 10, `fuzzing reached several outcomes: ${[...outcomes.keys()].join(', ')}`);
  });
});
