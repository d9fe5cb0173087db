// Honest health: a service whose NATS connection is gone reports NOT_SERVING (so a
// load balancer or Kubernetes stops sending it work) and SERVING again once NATS is
// back — observed from outside over grpc.health.v1 with mTLS, while nats-server is
// really stopped and started again on the same port.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkHealth } from '@talon/kit/grpc';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';

const NATS_CLIENTS = ['gateway', 'orchestrator', 'egress', 'sandbox'] as const;

describe('health follows dependencies', () => {
  let tp: TestPlatform;
  before(async () => {
    tp = await startTestPlatform({ llm: false });
  });
  after(async () => {
    await tp?.stop();
  });

  const status = (s: (typeof NATS_CLIENTS)[number] | 'memory' | 'vault') =>
    checkHealth(`127.0.0.1:${tp.ports.grpc[s]}`, tp.platform.tls('admin'), s, { timeoutMs: 3000 }).catch(() => 'UNREACHABLE' as const);

  it('goes NOT_SERVING while NATS is down and SERVING once it is back; services without NATS stay SERVING', async () => {
    for (const s of NATS_CLIENTS) assert.equal(await status(s), 'SERVING', s);
    await tp.platform.stopNats({ kill: true });
    for (const s of NATS_CLIENTS)
      await waitFor(async () => ((await status(s)) === 'NOT_SERVING' ? true : undefined), 30_000, `${s} to report NOT_SERVING`);
    // Memory and the vault hold no NATS connection: they go on serving.
    assert.equal(await status('memory'), 'SERVING');
    assert.equal(await status('vault'), 'SERVING');
    await tp.platform.startNats();
    for (const s of NATS_CLIENTS)
      await waitFor(async () => ((await status(s)) === 'SERVING' ? true : undefined), 60_000, `${s} to report SERVING again`);
  });
});
