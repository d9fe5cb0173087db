// gRPC identity is the certificate's SPIFFE URI: a certificate from another CA,
// a valid certificate naming the wrong workload, or none at all is refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient, unary, type TlsMaterial } from '@talon/kit/grpc';
import { TalonError } from '@talon/kit/errors';
import { createCa, issueCert } from '@talon/kit/pki';
import { MemoryServiceClient } from '@talon/proto';
import { credentials } from '@grpc/grpc-js';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

const conversation = { userId: 'mallory', channel: 'api', threadId: 't1' };
const turns = [{ id: 'x1', role: 'user', content: 'hi', source: 'user', createdAtMs: 0 }];

describe('gRPC over mTLS with SPIFFE identities', () => {
  let tp: TestPlatform;
  let ca: { certPem: string; keyPem: string };
  let addr: string;

  const tlsFor = async (name: string, opts: { uri?: string | null; foreign?: boolean } = {}): Promise<TlsMaterial> => {
    const issuer = opts.foreign ? await createCa('Evil CA') : ca;
    const leaf = await issueCert(issuer, { name, ...(opts.uri !== undefined ? { uri: opts.uri } : {}) });
    return { ca: Buffer.from(ca.certPem), cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
  };
  const append = (tls: TlsMaterial, expectServer = 'memory') => {
    const client = createClient(MemoryServiceClient, addr, tls, expectServer);
    return unary(client, client.appendTurns, { conversation, turns }, { timeoutMs: 3000 });
  };

  before(async () => {
    tp = await startTestPlatform({ services: ['memory'], llm: false });
    ca = { certPem: readFileSync(join(tp.home, 'pki', 'ca.crt'), 'utf8'), keyPem: readFileSync(join(tp.home, 'pki', 'ca.key'), 'utf8') };
    addr = `127.0.0.1:${tp.ports.grpc.memory}`;
  });
  after(async () => {
    await tp?.stop();
  });

  it('accepts the orchestrator identity', async () => {
    const res = await append(await tlsFor('orchestrator'));
    assert.equal(res.inserted, 1);
  });

  it('refuses a valid certificate naming the wrong workload', async () => {
    await assert.rejects(
      append(await tlsFor('gateway')),
      (e: TalonError) => e.code === 'permission_denied' && /spiffe:\/\/talon\/gateway/.test(e.message),
    );
    await assert.rejects(append(await tlsFor('sandbox')), (e: TalonError) => e.code === 'permission_denied');
  });

  it('refuses a certificate that spoofs the orchestrator name but carries no SPIFFE URI', async () => {
    await assert.rejects(append(await tlsFor('orchestrator', { uri: null })), (e: TalonError) => e.code === 'permission_denied');
  });

  it('refuses a certificate from another CA naming the orchestrator', async () => {
    await assert.rejects(append(await tlsFor('orchestrator', { foreign: true })), (e: TalonError) => e.code === 'unavailable');
  });

  it('refuses a SPIFFE id from another trust domain', async () => {
    await assert.rejects(
      append(await tlsFor('orchestrator', { uri: 'spiffe://evil/orchestrator' })),
      (e: TalonError) => e.code === 'permission_denied',
    );
  });

  it('refuses a client without a certificate', async () => {
    const client = new MemoryServiceClient(addr, credentials.createSsl(Buffer.from(ca.certPem)), {
      'grpc.ssl_target_name_override': 'memory',
    });
    await assert.rejects(
      unary(client, client.appendTurns, { conversation, turns }, { timeoutMs: 3000 }),
      (e: TalonError) => e.code === 'unavailable',
    );
  });

  it('a client refuses a server whose certificate names another workload', async () => {
    // The orchestrator's client expects spiffe://talon/vault here, but memory answers.
    await assert.rejects(append(await tlsFor('orchestrator'), 'vault'), (e: TalonError) => e.code === 'unavailable');
  });
});
