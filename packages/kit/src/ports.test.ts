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
import {
  awaitPeerPorts,
  bindFree,
  ephemeralPortRange,
  FREE_PORT_FLOOR,
  freeLoopbackPort,
  freePortCandidates,
  listenFree,
  listenOn,
  parsePortRange,
  PEER_PORTS_ENV,
  readPortsFile,
  reportPorts,
  PORTS_FILE_ENV,
} from './ports.ts';

const log = createLogger({ service: 'ports-test', level: 'silent' });

describe('free ports outside the ephemeral range', () => {
  it("reads Linux's ip_local_port_range, and refuses what is not a range", () => {
    assert.deepEqual(parsePortRange('32768\t60999\n'), { low: 32768, high: 60999 });
    for (const bad of ['', '60999 32768', '0 100', '1 70000', 'a b', '32768'])
      assert.equal(parsePortRange(bad), undefined, JSON.stringify(bad));
  });

  it("takes candidates on both sides of Linux's default range, never inside it or below the floor", () => {
    const eph = { low: 32768, high: 60999 };
    const ports = freePortCandidates(eph, 2000);
    assert.equal(ports.length, 2000);
    assert.equal(new Set(ports).size, 2000, 'distinct');
    for (const p of ports) assert.ok(p >= FREE_PORT_FLOOR && p <= 65535 && (p < eph.low || p > eph.high), String(p));
    assert.ok(
      ports.some((p) => p > eph.high),
      'above the range too',
    );
    assert.ok(
      ports.some((p) => p < eph.low),
      'below the range',
    );
  });

  it("maps the random draw onto both ranges end to end (IANA's range leaves only the part below)", () => {
    const eph = { low: 49152, high: 65535 };
    assert.deepEqual(
      freePortCandidates(eph, 1, () => 0),
      [FREE_PORT_FLOOR],
    );
    assert.deepEqual(
      freePortCandidates(eph, 1, () => 0.999999999),
      [49151],
    );
    assert.deepEqual(
      freePortCandidates({ low: 32768, high: 60999 }, 1, () => 0.999999999),
      [65535],
    );
  });

  it('has none to offer when the ephemeral range covers every port above the floor', () => {
    assert.deepEqual(freePortCandidates({ low: 1024, high: 65535 }, 8), []);
  });
});

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

  it('binds port 0 to a free port outside the ephemeral range and says which', () => {
    const eph = ephemeralPortRange();
    assert.ok(port >= FREE_PORT_FLOOR && port < 65536, String(port));
    assert.ok(port < eph.low || port > eph.high, `${port} is outside ${eph.low}–${eph.high}`);
    assert.equal((taken.address() as { port: number }).port, port);
  });

  it('skips a candidate that is taken', async () => {
    const next = await freeLoopbackPort();
    const s = createServer();
    assert.equal(await listenFree(s, '127.0.0.1', 0, () => [port, next]), next);
    s.close();
  });

  it('asks the kernel only when every candidate is taken', async () => {
    const s = createServer();
    const got = await listenFree(s, '127.0.0.1', 0, () => [port, port]);
    assert.ok(got > 0 && got !== port, String(got));
    assert.equal((s.address() as { port: number }).port, got);
    s.close();
  });

  it('ends at once on an error other than "address in use"', async () => {
    let calls = 0;
    const denied = Object.assign(new Error('listen EACCES'), { code: 'EACCES' });
    await assert.rejects(
      bindFree(
        0,
        () => {
          calls++;
          return Promise.reject(denied);
        },
        () => [20_001, 20_002],
      ),
      /EACCES/,
    );
    assert.equal(calls, 1);
  });

  it('finds a free port for a server that must be told its port', async () => {
    const free = await freeLoopbackPort();
    const eph = ephemeralPortRange();
    assert.ok(free >= FREE_PORT_FLOOR && (free < eph.low || free > eph.high), String(free));
    const s = createServer();
    assert.equal(await listenOn(s, { service: 't', key: 'T_PORT', host: '127.0.0.1', port: free }), free);
    s.close();
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
