// grpc.health.v1 as a service serves it (startGrpcServer) and clients and probes ask
// it, over real mTLS gRPC: Check per service and overall, NOT_FOUND for an unknown
// service, Watch hearing each change and ending cleanly, List of every status.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { EgressServiceService, HealthCheckResponse_ServingStatus as Wire, HealthClient, type HealthCheckResponse } from '@talon/proto';
import { checkHealth, createClient, startGrpcServer, type GrpcServerHandle, type Handlers, type TlsMaterial } from './grpc.ts';
import { createLogger } from './log.ts';
import { createCa, issueCert } from './pki.ts';

const log = createLogger({ service: 'health-test', level: 'silent' });
const handlers: Handlers<typeof EgressServiceService> = {
  redactText: async () => ({ texts: [] }),
  verifyWebhook: async () => ({ valid: false }),
  listSecretNames: async () => ({ secrets: [] }),
};
const SERVICE = 'talon.egress.v1.EgressService';
const nextMessage = (call: ClientReadableStream<HealthCheckResponse>) =>
  new Promise<HealthCheckResponse>((resolve) => call.once('data', resolve));

describe('grpc.health.v1', () => {
  let server: GrpcServerHandle;
  let admin: TlsMaterial;
  let address: string;

  before(async () => {
    const ca = await createCa();
    const tls = async (name: string): Promise<TlsMaterial> => {
      const leaf = await issueCert(ca, { name });
      return { ca: Buffer.from(ca.certPem), cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
    };
    admin = await tls('admin');
    server = await startGrpcServer({
      name: 'egress',
      host: '127.0.0.1',
      port: 0,
      tls: await tls('egress'),
      log,
      services: [{ definition: EgressServiceService, handlers, allow: () => true }],
    });
    address = `127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server?.shutdown(1000);
  });

  it('answers Check for the server and each service, following readiness, and NOT_FOUND for others', async () => {
    assert.equal(await checkHealth(address, admin, 'egress'), 'NOT_SERVING');
    server.setServing('SERVING');
    assert.equal(await checkHealth(address, admin, 'egress'), 'SERVING');
    assert.equal(await checkHealth(address, admin, 'egress', { service: SERVICE }), 'SERVING');
    server.setDependency('database', false);
    assert.equal(await checkHealth(address, admin, 'egress', { service: SERVICE }), 'NOT_SERVING');
    server.setDependency('database', true);
    assert.equal(await checkHealth(address, admin, 'egress', { service: 'no.such.Service' }), 'SERVICE_UNKNOWN');
  });

  it('streams each change to a Watch caller and forgets the caller once it cancels', async () => {
    server.setServing('SERVING');
    const client = createClient(HealthClient, address, admin, 'egress');
    try {
      const call = client.watch({ service: '' });
      const seen: HealthCheckResponse['status'][] = [];
      const next = () => nextMessage(call).then((m) => seen.push(m.status));
      await next();
      server.setDependency('nats', false);
      await next();
      server.setDependency('nats', true);
      await next();
      assert.deepEqual(seen, [Wire.SERVING, Wire.NOT_SERVING, Wire.SERVING]);
      assert.equal(server.health.watching, 1);
      call.on('error', () => undefined); // the CANCELLED status the cancel below brings
      call.cancel();
      // Signals, not time: the server drops the watcher once it sees the cancel.
      while (server.health.watching > 0) await new Promise((r) => setImmediate(r));

      const unknown = client.watch({ service: 'no.such.Service' });
      assert.equal((await nextMessage(unknown)).status, Wire.SERVICE_UNKNOWN);
      unknown.on('error', () => undefined);
      unknown.cancel();
    } finally {
      client.close();
    }
  });

  it('lists every status', async () => {
    server.setServing('SERVING');
    const client = createClient(HealthClient, address, admin, 'egress');
    try {
      const res = await new Promise<Record<string, HealthCheckResponse>>((resolve, reject) =>
        client.list({}, (err, r) => (err ? reject(err) : resolve(r.statuses))),
      );
      assert.deepEqual(res, { '': { status: Wire.SERVING }, [SERVICE]: { status: Wire.SERVING } });
    } finally {
      client.close();
    }
  });
});
