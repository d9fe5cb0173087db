// The internal HTTP probes of every service, observed from outside on the ports the
// services reported: /livez, /readyz (with the vault's seal state), readiness that
// follows NATS really stopped and started again and agrees with grpc.health.v1, and
// probes that leave no trace in the logs (they are polled every few seconds forever).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { checkHealth, createClient, unary } from '@talon/kit/grpc';
import { readPortsFile } from '@talon/kit/ports';
import { SERVICES, type ServiceName } from '@talon/kit/service';
import { VaultAdminServiceClient } from '@talon/proto';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';

const NATS_CLIENTS = ['gateway', 'orchestrator', 'egress', 'sandbox'] as const;
const PROBES = 50;

interface Probe {
  status: number;
  body: string;
  json: { status?: string; missing?: string[]; sealed?: unknown } | undefined;
}

describe('internal HTTP probes', () => {
  let tp: TestPlatform;
  before(async () => {
    // Debug level: a probe must not log even there.
    tp = await startTestPlatform({ llm: false, database: 'embedded', env: { TALON_LOG_LEVEL: 'debug' } });
  });
  after(async () => {
    await tp?.stop();
  });

  const probe = async (s: ServiceName, path: string, method = 'GET'): Promise<Probe> => {
    const res = await fetch(`${tp.platform.internalUrl(s)}${path}`, { method, signal: AbortSignal.timeout(5000) });
    const body = await res.text();
    let json: Probe['json'];
    try {
      json = JSON.parse(body) as Probe['json'];
    } catch {
      json = undefined;
    }
    return { status: res.status, body, json };
  };
  const readyz = (s: ServiceName) => probe(s, '/readyz').catch(() => ({ status: 0, body: '', json: undefined }) as Probe);

  it('every service answers /livez and /readyz on the internal port it reported', async () => {
    for (const s of SERVICES) {
      const port = tp.ports.internal[s];
      assert.ok(port > 0, `${s} internal port`);
      assert.equal(readPortsFile(tp.platform.portsFile(s))?.internal, port, `${s} reported its internal port`);
      assert.notEqual(port, tp.ports.grpc[s]);
      const live = await probe(s, '/livez');
      assert.equal(live.status, 200, s);
      assert.equal(live.body, 'ok\n', s);
      const ready = await probe(s, '/readyz');
      assert.equal(ready.status, 200, `${s}: ${ready.body}`);
      assert.equal(ready.json?.status, 'ready', s);
      assert.deepEqual(ready.json?.missing, [], s);
      const head = await probe(s, '/readyz', 'HEAD');
      assert.equal(head.status, 200, s);
      assert.equal(head.body, '', s);
      assert.equal((await probe(s, '/nope')).status, 404, s);
      assert.equal((await probe(s, '/livez', 'POST')).status, 405, s);
    }
  });

  it("the vault's /readyz reports its seal state; sealed is still ready", async () => {
    const sealed = await probe('vault', '/readyz');
    assert.equal(sealed.status, 200);
    assert.equal(sealed.json?.sealed, true, 'started without TALON_VAULT_PASSPHRASE');
    for (const s of SERVICES.filter((x) => x !== 'vault')) assert.equal((await probe(s, '/readyz')).json?.sealed, undefined, s);
    const vault = createClient(VaultAdminServiceClient, `127.0.0.1:${tp.ports.grpc.vault}`, tp.platform.tls('admin'), 'vault');
    try {
      await unary(vault, vault.unseal, { passphrase: `probes ${randomBytes(8).toString('hex')}` });
    } finally {
      vault.close();
    }
    const unsealed = await probe('vault', '/readyz');
    assert.equal(unsealed.status, 200);
    assert.equal(unsealed.json?.sealed, false);
  });

  it('/readyz goes 503 naming nats while NATS is down, agreeing with grpc.health.v1, and 200 once it is back', async () => {
    await tp.platform.stopNats({ kill: true });
    for (const s of NATS_CLIENTS) {
      const r = await waitFor(
        async () => {
          const p = await readyz(s);
          return p.status === 503 ? p : undefined;
        },
        30_000,
        `${s} /readyz to answer 503`,
      );
      assert.equal(r.json?.status, 'not_ready', s);
      assert.ok(r.json?.missing?.includes('nats'), `${s}: ${r.body}`);
      // One owner: gRPC health says the same.
      assert.equal(await checkHealth(`127.0.0.1:${tp.ports.grpc[s]}`, tp.platform.tls('admin'), s, { timeoutMs: 3000 }), 'NOT_SERVING', s);
      // Not ready is not dead: restarting it would not bring NATS back.
      assert.equal((await probe(s, '/livez')).status, 200, s);
    }
    // Memory and the vault hold no NATS connection: still ready.
    assert.equal((await readyz('memory')).status, 200);
    assert.equal((await readyz('vault')).status, 200);
    await tp.platform.startNats();
    for (const s of NATS_CLIENTS) {
      const r = await waitFor(
        async () => {
          const p = await readyz(s);
          return p.status === 200 ? p : undefined;
        },
        60_000,
        `${s} /readyz to answer 200 again`,
      );
      assert.deepEqual(r.json?.missing, [], s);
    }
  });

  it('probes write nothing to the logs; after shutdown the port answers no more', async () => {
    for (const s of SERVICES) {
      const before = tp.log(s).split('\n').length;
      for (let i = 0; i < PROBES; i += 1) {
        const r = await probe(s, ['/livez', '/readyz', '/nope'][i % 3]!, i % 2 === 0 ? 'GET' : 'HEAD');
        assert.ok(r.status === 200 || r.status === 404, `${s}: ${r.status}`);
      }
      // The signal: a graceful stop logs "shutting down", and once the process is gone all
      // of its output is in the log file; whatever the probes logged came before it.
      const proc = tp.platform.process(s)!;
      await proc.stop(12_000);
      await proc.logged;
      const lines = tp.log(s).split('\n');
      const stop = lines.findIndex((l, i) => i >= before - 1 && l.includes('"shutting down"'));
      assert.ok(stop >= 0, `${s} logged its shutdown`);
      const during = lines.slice(before - 1, stop).filter((l) => l.trim() !== '');
      assert.deepEqual(
        during.filter((l) => /livez|readyz|nope|probe|"(GET|HEAD)"/i.test(l)),
        [],
        `${s} logged a probe`,
      );
      // Background work may log a line now and then; one line per probe would be 50 or more.
      assert.ok(during.length < PROBES / 5, `${s} logged ${during.length} lines during ${PROBES} probes:\n${during.join('\n')}`);
      await assert.rejects(probe(s, '/livez'), `${s} internal port still answers after shutdown`);
    }
  });
});
