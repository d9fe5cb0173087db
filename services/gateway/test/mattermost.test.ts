// The Mattermost runner (channels/mattermost-runner.ts) through real vault and egress
// processes to a fake Mattermost on loopback: the upgrade's Authorization header is filled by
// egress (the runner only ever holds the placeholder), posts reach the intake in order and the
// bot's own are ignored, a post the intake could not queue is tried again and arrives once, a
// server that stops answering pings is left for a new connection, and a wrong token stops the
// runner with a message that says what to fix.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressClient } from '@talon/kit/egress';
import { createLogger } from '@talon/kit/log';
import { TalonError } from '@talon/kit/errors';
import { mattermostId, startFakeMattermost, startTestPlatform, waitFor, type FakeMattermost, type TestPlatform } from '@talon/testkit';
import { MattermostRunner } from '../src/channels/mattermost-runner.ts';
import type { InboundEvent } from '../src/channels/types.ts';

const PASSPHRASE = `mm-${randomBytes(8).toString('hex')}`;

describe('Mattermost through egress', () => {
  let tp: TestPlatform;
  let fake: FakeMattermost;
  let wrong: FakeMattermost;
  let egress: EgressClient;
  const dir = mkdtempSync(join(tmpdir(), 'talon-mattermost-'));
  const log = createLogger({ service: 'test', level: 'silent' });

  /** A runner whose intake records events; `failFirst` makes the first accepts fail like a NATS outage. */
  const start = (f: FakeMattermost, secret: string, opts: { failFirst?: number; pingIntervalMs?: number } = {}) => {
    const events: InboundEvent[] = [];
    let failures = opts.failFirst ?? 0;
    const runner = new MattermostRunner({
      egress,
      intake: {
        acceptEvent: async (ev) => {
          if (failures > 0) {
            failures -= 1;
            throw new TalonError('unavailable', 'NATS away');
          }
          events.push(ev);
        },
      },
      log,
      serverUrl: f.url,
      tokenSecret: secret,
      maxPayload: 1 << 20,
      backoffMs: 50,
      maxBackoffMs: 200,
      ...(opts.pingIntervalMs ? { pingIntervalMs: opts.pingIntervalMs } : {}),
    });
    const ac = new AbortController();
    const done = runner.run(ac.signal);
    return { runner, events, stop: async () => (ac.abort(), await done) };
  };

  before(async () => {
    fake = await startFakeMattermost();
    wrong = await startFakeMattermost();
    writeFileSync(
      join(dir, 'policy.json'),
      JSON.stringify({
        rules: [fake, wrong].map((f) => ({ principal: 'gateway', host: '127.0.0.1', port: f.port, methods: ['GET', 'POST'] })),
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
      ['mattermost_bot_token', fake.token, fake.port],
      ['mattermost_wrong_token', `not-${wrong.token}`, wrong.port],
    ] as const) {
      const r = tp.cli(['secrets', 'set', name, '--host', `127.0.0.1:${port}`, '--bearer', '--principal', 'gateway'], `${value}\n`);
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
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects with the header egress filled, passes posts in order, ignores its own, retries the intake', async () => {
    const r = start(fake, 'mattermost_bot_token', { failFirst: 2 });
    try {
      await waitFor(() => r.runner.status.status === 'connected' || undefined, 30_000, 'connected');
      assert.deepEqual(fake.upgrades, [`Bearer ${fake.token}`], 'the server got the value; the runner only had the placeholder');
      const [sue, chan] = [mattermostId(), mattermostId()];
      const first = fake.post({ userId: sue, channelId: chan, message: 'first' });
      fake.post({ userId: fake.botUserId, channelId: chan, message: 'my own echo' });
      const second = fake.post({ userId: sue, channelId: chan, message: '@talon second', channelType: 'D' });
      await waitFor(() => r.events.length >= 2 || undefined, 30_000, 'two posts');
      assert.deepEqual(
        r.events.map((e) => [e.dedupeId, e.threadId, e.account, e.text]),
        [
          [`mattermost:${first}`, `${chan}:${first}`, sue, 'first'],
          [`mattermost:${second}`, chan, sue, 'second'],
        ],
      );
      assert.equal(fake.connections, 1, 'the intake failures were retried without a reconnect');
    } finally {
      await r.stop();
    }
    assert.equal(r.runner.status.status, 'stopped');
  });

  it('leaves a server that stops answering pings for a new connection', async () => {
    const before = fake.connections;
    const r = start(fake, 'mattermost_bot_token', { pingIntervalMs: 150 });
    try {
      await waitFor(() => (fake.connections > before && fake.pings >= 1) || undefined, 30_000, 'a connection answering pings');
      fake.silent = true;
      await waitFor(() => fake.connections > before + 1 || undefined, 30_000, 'a new connection after the silence');
      fake.silent = false;
    } finally {
      fake.silent = false;
      await r.stop();
    }
  });

  it('stops on a wrong token and says what to fix', async () => {
    const r = start(wrong, 'mattermost_wrong_token');
    try {
      await waitFor(() => r.runner.status.status === 'fatal' || undefined, 30_000, 'the fatal state');
      assert.match(r.runner.status.problem, /bot token in the vault is not valid/);
      assert.equal(wrong.connections, 0);
    } finally {
      await r.stop();
    }
  });
});
