// The Discord Gateway runner (channels/discord-gateway-runner.ts) through real vault and
// egress processes to a fake Discord Gateway on loopback: the IDENTIFY token is filled by
// egress inside the frame (the runner only ever holds the placeholder), messages reach the
// intake in order and the bot's own are ignored, a dropped connection RESUMEs from the last
// committed sequence and what was dispatched meanwhile arrives once, a message the intake
// could not take is replayed after a resume, a new runner (a restarted gateway, the next
// lease holder) resumes the stored session and gets what was sent while none ran, an expired
// session falls back to IDENTIFY, and a wrong token stops the runner with a message that
// says what to fix.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressClient } from '@talon/kit/egress';
import { createLogger } from '@talon/kit/log';
import { TalonError } from '@talon/kit/errors';
import { startFakeDiscordGateway, startTestPlatform, waitFor, type FakeDiscordGateway, type TestPlatform } from '@talon/testkit';
import { DiscordGatewayRunner, type SessionStore } from '../src/channels/discord-gateway-runner.ts';
import type { SavedDiscordSession } from '../src/channels/discord-gateway.ts';
import type { InboundEvent } from '../src/channels/types.ts';

const PASSPHRASE = `dg-${randomBytes(8).toString('hex')}`;
const TOKEN = `MTA.${randomBytes(12).toString('hex')}.${randomBytes(16).toString('hex')}`;
const WRONG = `MTA.${randomBytes(12).toString('hex')}.${randomBytes(16).toString('hex')}`;

describe('Discord Gateway through egress', () => {
  let tp: TestPlatform;
  let fake: FakeDiscordGateway;
  let wrong: FakeDiscordGateway;
  let egress: EgressClient;
  const dir = mkdtempSync(join(tmpdir(), 'talon-discord-gw-'));
  const log = createLogger({ service: 'test', level: 'silent' });

  /** A runner whose intake records events; `failFirst` makes the first accept fail like a NATS outage. */
  const start = (url: string, secret: string, failFirst = false, sessions?: SessionStore) => {
    const events: InboundEvent[] = [];
    let failed = !failFirst;
    const runner = new DiscordGatewayRunner({
      connect: (u) => egress.websocket(u, { maxPayload: 1 << 20 }),
      intake: {
        acceptEvent: async (ev) => {
          if (!failed) {
            failed = true;
            throw new TalonError('unavailable', 'NATS away');
          }
          events.push(ev);
        },
      },
      ...(sessions ? { sessions } : {}),
      log,
      gatewayUrl: url,
      tokenSecret: secret,
      backoffMs: 50,
      maxBackoffMs: 200,
      random: () => 0.5,
    });
    const ac = new AbortController();
    const done = runner.run(ac.signal);
    return { runner, events, stop: async () => (ac.abort(), await done) };
  };

  before(async () => {
    fake = await startFakeDiscordGateway({ token: TOKEN });
    wrong = await startFakeDiscordGateway({ token: TOKEN });
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({
        rules: [fake, wrong].map((f) => ({ principal: 'gateway', host: '127.0.0.1', port: f.port, methods: ['GET'] })),
      }),
    );
    tp = await startTestPlatform({
      services: ['vault', 'egress'],
      llm: false,
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        EGRESS_POLICY_FILE: join(dir, 'policy.json'),
        TALON_EGRESS_ALLOW_PRIVATE: `127.0.0.1:${fake.port},127.0.0.1:${wrong.port}`,
      },
    });
    for (const [name, value, port] of [
      ['discord_gateway_token', TOKEN, fake.port],
      ['discord_wrong_token', WRONG, wrong.port],
    ] as const) {
      const r = tp.cli(['secrets', 'set', name, '--host', `127.0.0.1:${port}`, '--ws-frame', '--principal', 'gateway'], `${value}\n`);
      assert.equal(r.status, 0, r.stderr);
    }
    await tp.egressCaughtUpWithVault();
    egress = new EgressClient({ proxyUrl: `https://127.0.0.1:${tp.ports.egressProxy}`, tls: tp.platform.tls('gateway') });
  });
  after(async () => {
    await egress?.close();
    await tp?.stop();
    await fake?.close();
    await wrong?.close();
  });

  it('identifies with the token egress filled, passes messages in order, resumes after a drop without losing or repeating one', async () => {
    const r = start(fake.url, 'discord_gateway_token');
    try {
      await fake.ready(1);
      assert.deepEqual(fake.identifies, [TOKEN], 'the platform got the value; the runner only had the placeholder');
      fake.message({ id: '9001', channelId: '500', authorId: '700', content: 'first' });
      fake.message({ id: '9002', channelId: '500', authorId: fake.botId, content: 'my own echo' });
      fake.message({ id: '9003', channelId: '500', authorId: '701', content: 'from a bot', bot: true });
      fake.message({ id: '9004', channelId: '500', authorId: '700', content: 'second' });
      await waitFor(() => r.events.length >= 2, 30_000, 'two messages');
      fake.drop();
      // Dispatched while nobody is connected: replayed on RESUME.
      fake.message({ id: '9005', channelId: '501', authorId: '702', content: 'while away' });
      await fake.ready(2);
      await waitFor(() => r.events.length >= 3, 30_000, 'the message sent while away');
      assert.equal(fake.resumes.at(-1)?.token, TOKEN);
      assert.ok((fake.resumes.at(-1)?.seq ?? 0) >= 5, 'resumed from the committed sequence');
      assert.deepEqual(
        r.events.map((e) => [e.dedupeId, e.threadId, e.account, e.text]),
        [
          ['discord:9001', '500', '700', 'first'],
          ['discord:9004', '500', '700', 'second'],
          ['discord:9005', '501', '702', 'while away'],
        ],
      );
      assert.equal(r.runner.status.status, 'connected');
    } finally {
      await r.stop();
    }
    assert.equal(r.runner.status.status, 'stopped');
  });

  it('replays a message the intake could not take, after a resume', async () => {
    const before = fake.connections;
    const readies = fake.readies;
    const r = start(fake.url, 'discord_gateway_token', true);
    try {
      await waitFor(() => fake.connections > before, 30_000, 'a connection');
      await fake.ready(readies + 1);
      fake.message({ id: '9101', channelId: '500', authorId: '700', content: 'retry me' });
      await waitFor(() => r.events.some((e) => e.dedupeId === 'discord:9101'), 30_000, 'the replayed message');
      assert.equal(r.events.filter((e) => e.dedupeId === 'discord:9101').length, 1);
      assert.ok(fake.connections >= before + 2, 'it reconnected to get the message again');
    } finally {
      await r.stop();
    }
  });

  it('a new runner resumes the stored session: what was sent while none ran arrives once; an expired session identifies afresh', async () => {
    let stored: SavedDiscordSession | undefined;
    const writes: Array<SavedDiscordSession | undefined> = [];
    const store: SessionStore = {
      load: async () => stored,
      save: async (s) => {
        stored = s;
        writes.push(s);
      },
    };
    const first = start(fake.url, 'discord_gateway_token', false, store);
    let readies = fake.readies;
    try {
      await fake.ready(readies + 1);
      fake.message({ id: '9201', channelId: '500', authorId: '700', content: 'before the stop' });
      await waitFor(() => first.events.length === 1 || undefined, 30_000, 'the first message');
    } finally {
      await first.stop();
    }
    assert.equal(stored?.sessionId, fake.sessionId, 'the session was stored at shutdown');
    assert.equal(stored?.seq, fake.seq, 'with the last committed sequence');
    // Nobody connected: Discord keeps the session's dispatches for a resume.
    fake.message({ id: '9202', channelId: '500', authorId: '700', content: 'while no runner ran' });
    const identifies = fake.identifies.length;
    const storedSeq = stored!.seq;
    readies = fake.readies;
    const second = start(fake.url, 'discord_gateway_token', false, store);
    try {
      await fake.ready(readies + 1);
      await waitFor(() => second.events.length === 1 || undefined, 30_000, 'the replayed message');
      assert.deepEqual(
        second.events.map((e) => e.dedupeId),
        ['discord:9202'],
      );
      assert.equal(fake.identifies.length, identifies, 'resumed, not identified');
      assert.equal(fake.resumes.at(-1)?.seq, storedSeq, 'from the stored sequence');
    } finally {
      await second.stop();
    }
    // Discord timed the session out: the RESUME gets INVALID_SESSION, the runner identifies and stores the new session.
    fake.expireSession();
    const resumes = fake.resumes.length;
    readies = fake.readies;
    const third = start(fake.url, 'discord_gateway_token', false, store);
    try {
      await fake.ready(readies + 1);
      assert.equal(fake.resumes.length, resumes + 1, 'it tried to resume first');
      assert.equal(fake.identifies.length, identifies + 1, 'then identified');
      fake.message({ id: '9203', channelId: '500', authorId: '700', content: 'new session' });
      await waitFor(() => third.events.length === 1 || undefined, 30_000, 'a message on the new session');
      await waitFor(() => stored?.sessionId === fake.sessionId || undefined, 30_000, 'the new session stored');
      assert.ok(writes.includes(undefined), 'the invalidated session was forgotten');
    } finally {
      await third.stop();
    }
  });

  it('stops on a wrong token (4004) and says what to fix', async () => {
    const r = start(wrong.url, 'discord_wrong_token');
    try {
      await waitFor(() => r.runner.status.status === 'fatal', 30_000, 'the fatal state');
      assert.match(r.runner.status.problem, /token in the vault is wrong/);
      assert.deepEqual(wrong.identifies, [WRONG]);
    } finally {
      await r.stop();
    }
  });
});
