import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './config.ts';
import { startGrpcServer } from './grpc.ts';
import { createLogger } from './log.ts';
import { createCa, issueCert } from './pki.ts';
import { awaitPeerPorts, listenOn, PEER_PORTS_ENV, readPortsFile, reportPorts, PORTS_FILE_ENV } from './ports.ts';

const log = createLogger({ service: 'ports-test', level: 'silent' });

describe('listening ports', () => {
  let taken: Server;
  let port: number;
  const dir = mkdtempSync(join(tmpdir(), 'talon-ports-'));

  before(async () => {
    taken = createServer();
    port = await listenOn(taken, { service: 't', key: 'T_PORT', host: '127.0.0.1', port: 0 });
  });
  after(() => {
    taken.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('binds port 0 to a free port and says which', () => {
    assert.ok(port > 0 && port < 65536);
    assert.equal((taken.address() as { port: number }).port, port);
  });

  it('stops at once on a port that is set and taken, naming the address and the variable', async () => {
    const s = createServer();
    await assert.rejects(
      listenOn(s, { service: 'gateway', key: 'TALON_GATEWAY_PORT', host: '127.0.0.1', port }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.message.includes(`TALON_GATEWAY_PORT: 127.0.0.1:${port} is already in use`) &&
        err.problems[0]?.key === 'TALON_GATEWAY_PORT',
    );
  });

  it('does the same for a gRPC server, naming <SERVICE>_GRPC_PORT', async () => {
    const ca = await createCa();
    const leaf = await issueCert(ca, { name: 'vault' });
    const tls = { ca: Buffer.from(ca.certPem), cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
    await assert.rejects(
      startGrpcServer({ name: 'vault', host: '127.0.0.1', port, tls, log, services: [] }),
      (err: unknown) => err instanceof ConfigError && err.message.includes(`VAULT_GRPC_PORT: 127.0.0.1:${port} is already in use`),
    );
    const free = await startGrpcServer({ name: 'vault', host: '127.0.0.1', port: 0, tls, log, services: [] });
    assert.ok(free.port > 0);
    await free.shutdown(1000);
  });

  it('reports bound ports in one piece, and hands them to peers started before they were known', async () => {
    const file = join(dir, 'egress.ports.json');
    const env: Record<string, string | undefined> = {
      [PEER_PORTS_ENV]: JSON.stringify({
        X_EGRESS_URL: { file, role: 'proxy', template: 'https://127.0.0.1:{port}' },
        X_EGRESS_ADDR: { file, role: 'grpc', template: '127.0.0.1:{port}' },
      }),
    };
    let resolved = false;
    const waiting = awaitPeerPorts(env).then(() => (resolved = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(resolved, false, 'waits while the peer has not reported');
    assert.equal(readPortsFile(file), undefined);
    reportPorts({ proxy: 4321, grpc: 1234 }, { [PORTS_FILE_ENV]: file });
    await waiting;
    assert.deepEqual(readPortsFile(file), { proxy: 4321, grpc: 1234 });
    assert.deepEqual(readdirSync(dir), ['egress.ports.json'], 'no temporary file left behind');
    assert.equal(env.X_EGRESS_URL, 'https://127.0.0.1:4321');
    assert.equal(env.X_EGRESS_ADDR, '127.0.0.1:1234');
    assert.equal(env[PEER_PORTS_ENV], undefined);
  });

  it('gives up on a peer that never reports, naming what it waited for', async () => {
    const env = { [PEER_PORTS_ENV]: JSON.stringify({ X_VAULT_ADDR: { file: join(dir, 'none.json'), role: 'grpc', template: '{port}' } }) };
    await assert.rejects(awaitPeerPorts(env, 100), /X_VAULT_ADDR \(grpc port in .*none\.json\)/);
  });
});
