// Provisioning as its own step, as compose and Kubernetes run it: a real nats-server
// with Talon's per-service users but no streams, a service identity that waits for
// them (saying once what it waits for) instead of failing, and `talon provision` run
// as the operator would, after which the wait ends.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { jetstreamManager } from '@nats-io/jetstream';
import { createLogger } from '@talon/kit/log';
import { connectNats, waitForProvisioning, type NatsConnection } from '@talon/kit/nats';
import { STREAMS, requiredStreams, type NatsUser } from '@talon/kit/subjects';
import { SERVICES, type ServiceName } from '@talon/kit/service';
import { Platform, REPO_ROOT } from '@talon/cli/platform';

const SERVICE_USERS: NatsUser[] = ['gateway', 'orchestrator', 'egress', 'sandbox'];

describe('talon provision', () => {
  let home: string;
  let platform: Platform;
  const conns: NatsConnection[] = [];

  const connectAs = async (user: NatsUser) => {
    const nc = await connectNats({
      servers: platform.natsUrl,
      user,
      seedFile: join(home, 'nats', `${user}.nk`),
      log: createLogger({ service: 'test', level: 'silent' }),
    });
    conns.push(nc);
    return nc;
  };

  const provision = (...args: string[]) =>
    spawnSync(process.execPath, [join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts'), 'provision', ...args], {
      env: { ...process.env, TALON_HOME: home, TALON_NATS_URL: platform.natsUrl },
      encoding: 'utf8',
    });

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'talon-provision-'));
    platform = new Platform({
      home,
      ports: {
        gatewayHttp: 0,
        nats: 0,
        pglite: 0,
        egressProxy: 0,
        grpc: Object.fromEntries(SERVICES.map((s) => [s, 0])) as Record<ServiceName, number>,
        internal: Object.fromEntries(SERVICES.map((s) => [s, 0])) as Record<ServiceName, number>,
      },
      provision: false,
      autoRestart: false,
    });
    await platform.startNats();
  });

  after(async () => {
    for (const nc of conns) await nc.close().catch(() => undefined);
    await platform?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it('derives what each service needs from its NATS permissions', () => {
    assert.ok(requiredStreams('gateway').includes(STREAMS.inbound.name));
    assert.ok(requiredStreams('orchestrator').includes('KV_talon_turns'));
    for (const u of SERVICE_USERS) assert.ok(requiredStreams(u).length > 0, u);
  });

  it('keeps a service waiting, told once, until `talon provision` has run; then every service finds its streams', async () => {
    const lines: Array<{ level: number; msg: string; missing?: string[] }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as (typeof lines)[number]);
        done();
      },
    });
    const log = createLogger({ service: 'orchestrator', destination: sink });
    const nc = await connectAs('orchestrator');
    let done = false;
    const waiting = waitForProvisioning(nc, 'orchestrator', log, { intervalMs: 50 }).then(() => {
      done = true;
    });
    // Several checks pass with the streams missing: the service neither gives up nor repeats itself.
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    for (const end = Date.now() + 30_000; lines.length === 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
    // Checks go on after the first (every 50 ms): still nothing, still waiting.
    for (let i = 0; i < 5; i++) await assert.rejects(jsm.streams.info('KV_talon_turns'), /stream not found/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(done, false, 'still waiting without streams');
    const warns = lines.filter((l) => l.level === 40);
    assert.equal(warns.length, 1, 'one line says what it waits for');
    assert.match(warns[0]!.msg, /talon provision/);
    assert.ok(warns[0]!.missing?.includes('KV_talon_turns'));

    const bad = provision('--replicas', '9');
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--replicas must be a whole number from 1 to 5/);
    const res = provision();
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /JetStream is provisioned/);
    assert.match(res.stderr, /stream TALON_INBOUND/);
    await waiting;
    assert.equal(lines.filter((l) => l.level === 30 && /provisioned/.test(l.msg)).length, 1);

    // Every service identity now finds what it needs at once; running it again changes nothing.
    for (const u of SERVICE_USERS) await waitForProvisioning(await connectAs(u), u, createLogger({ service: u, level: 'silent' }));
    const again = provision();
    assert.equal(again.status, 0, again.stderr);
  });
});
