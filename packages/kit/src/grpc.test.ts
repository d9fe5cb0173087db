import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EgressServiceClient, EgressServiceService } from '@talon/proto';
import { TalonError } from './errors.ts';
import { createClient, startGrpcServer, unary, unaryMethodName, type GrpcServerHandle, type Handlers, type TlsMaterial } from './grpc.ts';
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
