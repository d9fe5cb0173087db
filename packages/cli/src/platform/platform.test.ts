import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SERVICES } from '@talon/kit/service';
import { defaultPorts, MALLOC_ENV, Platform, PGLITE_MALLOC_ENV } from './platform.ts';
import { readRunState, writeRunFile } from './run-file.ts';

describe('service environments', () => {
  const home = mkdtempSync(join(tmpdir(), 'talon-env-'));
  const p = new Platform({
    home,
    ports: defaultPorts({ EGRESS_PROXY_PORT: '7480' }),
    baseEnv: {
      PATH: '/usr/bin',
      TALON_VAULT_PASSPHRASE: 'pp-123456789012',
      TALON_DATABASE_URL: 'postgres://admin:pw@db/x',
      TALON_LLM_MODEL: 'm1',
      MEMORY_HNSW_M: '32',
      ORCHESTRATOR_TOOL_MAX_STEPS: '3',
      SOME_OTHER: 'x',
    },
  });

  it('gives the passphrase to the vault alone and the admin database URL to nobody', () => {
    for (const s of SERVICES) {
      const env = p.serviceEnv(s);
      assert.equal(env.TALON_VAULT_PASSPHRASE, s === 'vault' ? 'pp-123456789012' : undefined, s);
      assert.equal(env.TALON_DATABASE_URL, undefined, s);
      assert.equal(env.SOME_OTHER, undefined, s);
    }
  });

  it('forwards platform-wide settings to all and a service’s own settings to it alone', () => {
    for (const s of SERVICES) {
      const env = p.serviceEnv(s);
      assert.equal(env.TALON_LLM_MODEL, 'm1');
      assert.equal(env.OTEL_SERVICE_NAME, s);
      assert.equal(env.MEMORY_HNSW_M, s === 'memory' ? '32' : undefined, s);
      assert.equal(env.ORCHESTRATOR_TOOL_MAX_STEPS, s === 'orchestrator' ? '3' : undefined, s);
    }
    assert.equal(p.serviceEnv('orchestrator').ORCHESTRATOR_EGRESS_URL, 'https://127.0.0.1:7480');
    assert.equal(p.serviceEnv('sandbox').SANDBOX_EGRESS_URL, 'https://127.0.0.1:7480');
  });

  it('holds glibc malloc to two arenas in every service, and the embedded database to a fixed mmap threshold too', () => {
    assert.equal(MALLOC_ENV.MALLOC_ARENA_MAX, '2');
    for (const s of SERVICES) {
      const env = p.serviceEnv(s);
      assert.equal(env.MALLOC_ARENA_MAX, '2', s);
      assert.equal(env.MALLOC_MMAP_THRESHOLD_, undefined, s);
    }
    for (const [k, v] of Object.entries(PGLITE_MALLOC_ENV)) assert.equal(p.pgliteEnv()[k], v, k);
    assert.equal(p.pgliteEnv().MALLOC_MMAP_THRESHOLD_, '131072');
    assert.equal(p.pgliteEnv().TALON_VAULT_PASSPHRASE, undefined);
    rmSync(home, { recursive: true, force: true });
  });
});

describe('ports', () => {
  it('stops at once when a port that is set is taken, naming the address and the variable', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as AddressInfo).port;
    const home = mkdtempSync(join(tmpdir(), 'talon-ports-'));
    const p = new Platform({ home, ports: { ...defaultPorts({}), nats: port }, baseEnv: process.env, autoRestart: true });
    try {
      const t0 = Date.now();
      await assert.rejects(p.start([]), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(`TALON_NATS_PORT=${port} is in use by another process; choose another or unset it to pick a free port`),
        );
        return true;
      });
      assert.ok(Date.now() - t0 < 30_000, 'no waiting out a timeout');
    } finally {
      await p.stop();
      taken.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('names the port and the variable when nats-server itself finds its port taken', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as AddressInfo).port;
    const home = mkdtempSync(join(tmpdir(), 'talon-ports-'));
    const p = new Platform({ home, ports: { ...defaultPorts({}), nats: port }, baseEnv: process.env });
    try {
      // Straight to nats-server (past start's early check), as when the port is taken in between.
      await assert.rejects(p.startNats(), (err: Error) => {
        assert.match(
          err.message,
          new RegExp(`TALON_NATS_PORT=${port} is in use by another process; choose another or unset it to pick a free port`),
        );
        assert.match(err.message, /last log lines:\n.*address already in use/s, 'with the server’s own words');
        return true;
      });
    } finally {
      await p.stop();
      taken.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('starts nats-server on port 0 and takes the port it reports', async () => {
    const home = mkdtempSync(join(tmpdir(), 'talon-ports-'));
    const p = new Platform({ home, ports: defaultPorts({ VAULT_GRPC_PORT: '7404' }), baseEnv: process.env });
    try {
      await p.startNats();
      assert.notEqual(p.ports.nats, 0);
      assert.equal(p.natsUrl, `nats://127.0.0.1:${p.ports.nats}`);
      // Only a running peer's unknown port is deferred (TALON_PEER_PORTS); a set one is passed as is.
      const env = p.serviceEnv('egress');
      assert.equal(env.EGRESS_VAULT_ADDR, '127.0.0.1:7404');
      assert.equal(env.TALON_PEER_PORTS, undefined);
      assert.equal(env.TALON_NATS_URL, p.natsUrl);
    } finally {
      await p.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('refuses a second platform on a TALON_HOME whose talon up still runs, before touching anything', async () => {
    const home = mkdtempSync(join(tmpdir(), 'talon-ports-'));
    // The parent process stands for another live `talon up`.
    const other = { pid: process.ppid, natsUrl: 'nats://127.0.0.1:1', ports: defaultPorts({}) };
    const p = new Platform({ home, ports: defaultPorts({}), baseEnv: process.env });
    try {
      writeRunFile(p.home.root, other);
      await assert.rejects(
        p.start([]),
        /Talon is already running under TALON_HOME=.* \(pid \d+\); stop it first or use another TALON_HOME/,
      );
      await p.stop();
      assert.deepEqual(readRunState(p.home.root), { kind: 'running', info: other }, 'its run file is not ours to remove');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
