// The leader lease against a real nats-server, as the gateway's NATS identity (its rights
// cover only `lease.gateway.>` in talon_leases): one holder at a time, prompt hand-over on
// release, take-over after a holder vanished only once it has stepped down, loss at once
// when another holder took the key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Kvm, type KV } from '@nats-io/kv';
import { createLogger } from './log.ts';
import { connectNats, openDirectKv, type NatsConnection } from './nats.ts';
import { KV_BUCKETS } from './subjects.ts';
import { candidateStep, Lease, leaseHolder, whileLeader } from './lease.ts';
import { startTestPlatform, type TestPlatform } from '../../testkit/src/harness.ts';
import { waitFor } from '../../testkit/src/wait.ts';

const log = createLogger({ service: 'test', level: 'silent' });

describe('candidateStep (pure)', () => {
  it('creates a free key, takes a deleted one, waits a full ttl on a held one', () => {
    assert.deepEqual(candidateStep(null, undefined, 0, 100), { action: 'create' });
    assert.deepEqual(candidateStep({ revision: 7, holder: undefined }, undefined, 0, 100), { action: 'take', revision: 7 });
    const first = candidateStep({ revision: 7, holder: 'a' }, undefined, 1000, 100);
    assert.deepEqual(first, { action: 'wait', seen: { revision: 7, since: 1000 } });
    assert.equal(candidateStep({ revision: 7, holder: 'a' }, { revision: 7, since: 1000 }, 1099, 100).action, 'wait');
    assert.deepEqual(candidateStep({ revision: 7, holder: 'a' }, { revision: 7, since: 1000 }, 1100, 100), { action: 'take', revision: 7 });
    // A renewal (new revision) starts the wait over.
    assert.deepEqual(candidateStep({ revision: 8, holder: 'a' }, { revision: 7, since: 1000 }, 1100, 100), {
      action: 'wait',
      seen: { revision: 8, since: 1100 },
    });
  });
});

describe('Lease on NATS KV', () => {
  let tp: TestPlatform;
  const conns: NatsConnection[] = [];
  const gatewayKv = async (): Promise<{ nc: NatsConnection; kv: KV }> => {
    const nc = await connectNats({ servers: tp.platform.natsUrl, user: 'gateway', seedFile: join(tp.home, 'nats', 'gateway.nk'), log });
    conns.push(nc);
    return { nc, kv: await openDirectKv(nc, KV_BUCKETS.leases) };
  };
  let n = 0;
  const key = () => `lease.gateway.test.k${++n}`;

  before(async () => {
    tp = await startTestPlatform({ services: [], llm: false });
  });
  after(async () => {
    for (const nc of conns) await nc.close().catch(() => undefined);
    await tp?.stop();
  });

  it('one holder at a time; a release hands over at once', async () => {
    const k = key();
    const a = new Lease({ kv: (await gatewayKv()).kv, key: k, owner: 'a', ttlMs: 3000 });
    const b = new Lease({ kv: (await gatewayKv()).kv, key: k, owner: 'b', ttlMs: 3000, intervalMs: 100 });
    const termA = await a.acquire();
    assert.ok(a.isLeader);
    let bLeads = false;
    const bAcquired = b.acquire().then((s) => ((bLeads = true), s));
    // Past several renewals of a and looks of b: b still waits (a's renewals keep the lease fresh).
    await waitFor(() => a.renewals >= 2, 10_000, 'a to renew twice');
    assert.equal(bLeads, false, 'b must not lead while a renews');
    const t0 = performance.now();
    await a.release();
    assert.ok(termA.aborted, 'a’s term ended with the release');
    await bAcquired;
    assert.ok(performance.now() - t0 < 2000, 'b took over well before the ttl');
    assert.ok(b.isLeader && !a.isLeader);
    const admin = await new Kvm(await tp.admin()).open(KV_BUCKETS.leases);
    assert.equal(leaseHolder(await admin.get(k)), 'b');
    await b.release();
  });

  it('a holder that vanished is replaced only after it stepped down', async () => {
    const k = key();
    const gone = await gatewayKv();
    const a = new Lease({ kv: gone.kv, key: k, owner: 'a', ttlMs: 1500 });
    const b = new Lease({ kv: (await gatewayKv()).kv, key: k, owner: 'b', ttlMs: 1500, intervalMs: 100 });
    const termA = await a.acquire();
    let lostAt = 0;
    termA.addEventListener('abort', () => (lostAt = performance.now()));
    const bAcquired = b.acquire().then(() => performance.now());
    // The holder's NATS connection dies: it cannot renew.
    await gone.nc.close();
    const acquiredAt = await bAcquired;
    assert.ok(lostAt > 0, 'a stepped down');
    assert.ok(lostAt <= acquiredAt, `a stepped down (${lostAt.toFixed(0)}) before b took over (${acquiredAt.toFixed(0)})`);
    await b.release();
  });

  it('a holder whose key was taken by someone else loses leadership at its next renewal', async () => {
    const k = key();
    const a = new Lease({ kv: (await gatewayKv()).kv, key: k, owner: 'a', ttlMs: 3000, intervalMs: 100 });
    const term = await a.acquire();
    const other = (await gatewayKv()).kv;
    await other.put(k, new TextEncoder().encode(JSON.stringify({ owner: 'intruder', ttlMs: 3000 })));
    await waitFor(() => term.aborted, 2000, 'a to notice');
    assert.equal(a.isLeader, false);
    // Its release does not delete the intruder's key.
    await a.release();
    assert.equal(leaseHolder(await other.get(k)), 'intruder');
  });

  it('whileLeader runs the work under one holder of two, and the other takes over when it stops', async () => {
    const k = key();
    let running = 0;
    let maxRunning = 0;
    const ran: string[] = [];
    const work = (who: string) => async (term: AbortSignal) => {
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      ran.push(who);
      await new Promise<void>((r) => term.addEventListener('abort', () => r(), { once: true }));
      running -= 1;
    };
    const stopA = new AbortController();
    const stopB = new AbortController();
    const la = new Lease({ kv: (await gatewayKv()).kv, key: k, owner: 'a', ttlMs: 1500, intervalMs: 100 });
    const lb = new Lease({ kv: (await gatewayKv()).kv, key: k, owner: 'b', ttlMs: 1500, intervalMs: 100 });
    const runA = whileLeader(la, stopA.signal, work('a'), log);
    await waitFor(() => ran.length === 1, 5000, 'a to lead');
    const runB = whileLeader(lb, stopB.signal, work('b'), log);
    await waitFor(() => la.renewals >= 4, 10_000, 'a to renew a few times');
    assert.deepEqual(ran, ['a']);
    stopA.abort();
    await runA;
    await waitFor(() => ran.length === 2, 5000, 'b to take over');
    assert.deepEqual(ran, ['a', 'b']);
    assert.equal(maxRunning, 1, 'never two at once');
    stopB.abort();
    await runB;
  });

  it('the gateway cannot take another service’s lease', async () => {
    const { kv } = await gatewayKv();
    const l = new Lease({ kv, key: 'lease.orchestrator.routine', owner: 'gw', ttlMs: 1000, intervalMs: 50 });
    await assert.rejects(l.acquire(AbortSignal.timeout(500)));
    assert.equal(l.isLeader, false);
    await assert.rejects(kv.put('lease.orchestrator.routine', new Uint8Array([1])));
  });
});
