import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EgressServiceClient, EgressServiceService, VaultServiceClient, VaultServiceService } from '@talon/proto';
import { TalonError } from './errors.ts';
import {
  createClient,
  serverStream,
  startGrpcServer,
  unary,
  unaryMethodName,
  type GrpcServerHandle,
  type Handlers,
  type TlsMaterial,
} from './grpc.ts';
import { createLogger } from './log.ts';
import { createCa, issueCert } from './pki.ts';

const log = createLogger({ service: 'grpc-test', level: 'silent' });

describe('typed gRPC calls and registrations', () => {
  let ca: Awaited<ReturnType<typeof createCa>>;
  let server: GrpcServerHandle;
  const tls = async (name: string): Promise<TlsMaterial> => {
    const leaf = await issueCert(ca, { name });
    return { ca: Buffer.from(ca.certPem), cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
  };
  const handlers: Handlers<typeof EgressServiceService> = {
    redactText: async (req, ctx) => ({ texts: req.texts.map((t) => ({ text: `${ctx.peer}:${t.toUpperCase()}`, labels: [] })) }),
    verifyWebhook: async () => ({ valid: true }),
    listSecretNames: async () => ({ secrets: [] }),
  };

  before(async () => {
    ca = await createCa();
    server = await startGrpcServer({
      name: 'egress',
      host: '127.0.0.1',
      port: 0,
      tls: await tls('egress'),
      log,
      services: [
        {
          definition: EgressServiceService,
          handlers,
          allow: (peer, method) => peer === 'gateway' || (peer === 'orchestrator' && method === 'redactText'),
        },
      ],
    });
    server.setServing('SERVING');
  });
  after(async () => {
    await server?.shutdown(1000);
  });

  it('calls a method typed by the generated client, and maps refusals to TalonErrors', async () => {
    const client = createClient(EgressServiceClient, `127.0.0.1:${server.port}`, await tls('orchestrator'), 'egress');
    try {
      assert.equal(unaryMethodName(client, client.redactText), 'redactText');
      const res = await unary(client, client.redactText, { texts: ['abc'] }, { timeoutMs: 3000 });
      assert.deepEqual(res.texts, [{ text: 'orchestrator:ABC', labels: [] }]);
      await assert.rejects(
        unary(client, client.listSecretNames, {}),
        (e: unknown) => e instanceof TalonError && e.code === 'permission_denied' && /listSecretNames/.test(e.message),
      );
    } finally {
      client.close();
    }
  });

  it('refuses a registration that lacks a handler (a compile error too)', async () => {
    const { listSecretNames: _omitted, ...partial } = handlers;
    await assert.rejects(
      startGrpcServer({
        name: 'egress',
        host: '127.0.0.1',
        port: 0,
        tls: await tls('egress'),
        log,
        // @ts-expect-error listSecretNames has no handler
        services: [{ definition: EgressServiceService, handlers: partial, allow: ['gateway'] }],
      }),
      /no handler for talon\.egress\.v1\.EgressService\/listSecretNames/,
    );
  });
});

describe('server-streaming calls', () => {
  let ca: Awaited<ReturnType<typeof createCa>>;
  const tls = async (name: string): Promise<TlsMaterial> => {
    const leaf = await issueCert(ca, { name });
    return { ca: Buffer.from(ca.certPem), cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
  };
  const unused = async (): Promise<never> => {
    throw new TalonError('internal', 'not used here');
  };
  let aborted = 0;
  const push: Array<(epoch: number) => void> = [];
  const handlers: Handlers<typeof VaultServiceService> = {
    status: unused,
    resolve: unused,
    scanIndex: unused,
    verifySignature: unused,
    listSecrets: unused,
    watch: async (_req, _ctx, stream) => {
      stream.write({ epoch: 1, sealed: false });
      push.push((epoch) => stream.write({ epoch, sealed: true }));
      await new Promise((r) => stream.signal.addEventListener('abort', r, { once: true }));
      aborted += 1;
    },
  };

  before(async () => {
    ca = await createCa();
  });

  const start = async () => {
    const server = await startGrpcServer({
      name: 'vault',
      host: '127.0.0.1',
      port: 0,
      tls: await tls('vault'),
      log,
      services: [{ definition: VaultServiceService, handlers, allow: ['egress'] }],
    });
    server.setServing('SERVING');
    return server;
  };

  it('streams messages to an allowed caller, refuses others, and ends open streams at shutdown without waiting', async () => {
    const server = await start();
    const client = createClient(VaultServiceClient, `127.0.0.1:${server.port}`, await tls('egress'), 'vault');
    const other = createClient(VaultServiceClient, `127.0.0.1:${server.port}`, await tls('gateway'), 'vault');
    try {
      const got: Array<{ epoch: number; sealed: boolean }> = [];
      let ended: { err: TalonError | undefined } | undefined;
      serverStream(client, client.watch, {}, { message: (m) => got.push(m), end: (err) => (ended = { err }) });
      await waitFor('first message', () => got.length === 1);
      push.at(-1)!(2);
      await waitFor('pushed message', () => got.length === 2);
      assert.deepEqual(got, [
        { epoch: 1, sealed: false },
        { epoch: 2, sealed: true },
      ]);

      let refused: TalonError | undefined;
      serverStream(
        other,
        other.watch,
        {},
        { message: () => assert.fail('no message for a refused caller'), end: (err) => (refused = err) },
      );
      await waitFor('refusal', () => refused !== undefined);
      assert.equal(refused?.code, 'permission_denied');

      const t0 = Date.now();
      await server.shutdown(5000);
      assert.ok(Date.now() - t0 < 2000, 'shutdown did not wait for the open stream');
      await waitFor('stream end', () => ended !== undefined);
      assert.equal(ended?.err, undefined, 'a stream ended by the server shutting down ends with OK');
      assert.equal(aborted, 1);
    } finally {
      client.close();
      other.close();
    }
  });

  it('a cancel by the client aborts the handler', async () => {
    const server = await start();
    const client = createClient(VaultServiceClient, `127.0.0.1:${server.port}`, await tls('egress'), 'vault');
    try {
      const before = aborted;
      let n = 0;
      const s = serverStream(client, client.watch, {}, { message: () => (n += 1), end: () => assert.fail('no end after our own cancel') });
      await waitFor('first message', () => n === 1);
      s.cancel();
      await waitFor('handler aborted', () => aborted === before + 1);
    } finally {
      client.close();
      await server.shutdown(1000);
    }
  });
});

async function waitFor(what: string, ok: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
