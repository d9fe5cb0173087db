import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SERVICES } from '@talon/kit/service';
import {
  defaultPorts,
  parseRunInfo,
  portTakenMessage,
  resolveEndpoint,
  serializeRunInfo,
  setPorts,
  type RunInfo,
  type RunState,
} from './endpoints.ts';

const HOME = '/srv/talon-a';
const RUN_FILE = `${HOME}/run/platform.json`;
const info: RunInfo = {
  pid: 4242,
  natsUrl: 'nats://127.0.0.1:41001',
  ports: {
    ...defaultPorts({}),
    nats: 41001,
    pglite: 41002,
    egressProxy: 41003,
    grpc: { gateway: 41011, orchestrator: 41012, memory: 41013, vault: 41014, sandbox: 0, egress: 41016 },
    internal: { gateway: 41021, orchestrator: 41022, memory: 41023, vault: 41024, sandbox: 0, egress: 41026 },
  },
};
const running: RunState = { kind: 'running', info };
const where = (target: Parameters<typeof resolveEndpoint>[0], env: Record<string, string | undefined>, run: RunState = running) =>
  resolveEndpoint(target, { env, home: HOME, run, runFile: RUN_FILE });

describe('the ports talon up asks for', () => {
  it('picks every internal port free unless its variable sets it; the gateway keeps 8080', () => {
    const p = defaultPorts({});
    assert.equal(p.gatewayHttp, 8080);
    assert.deepEqual([p.nats, p.pglite, p.egressProxy], [0, 0, 0]);
    for (const s of SERVICES) assert.deepEqual([p.grpc[s], p.internal[s]], [0, 0], s);
  });

  it('takes the value of each variable that is set, 0 included', () => {
    const p = defaultPorts({
      TALON_GATEWAY_PORT: '0',
      TALON_NATS_PORT: '4223',
      TALON_PGLITE_PORT: ' 5433 ',
      EGRESS_PROXY_PORT: '7480',
      VAULT_GRPC_PORT: '7404',
      MEMORY_INTERNAL_PORT: '7413',
      ORCHESTRATOR_GRPC_PORT: '',
    });
    assert.deepEqual([p.gatewayHttp, p.nats, p.pglite, p.egressProxy], [0, 4223, 5433, 7480]);
    assert.equal(p.grpc.vault, 7404);
    assert.equal(p.internal.memory, 7413);
    assert.equal(p.grpc.orchestrator, 0, 'empty is unset');
  });

  it('refuses a value that is not a port, naming the variable', () => {
    assert.throws(() => defaultPorts({ TALON_NATS_PORT: 'nats' }), /^Error: TALON_NATS_PORT=nats is not a port/);
    assert.throws(() => defaultPorts({ VAULT_GRPC_PORT: '70000' }), /VAULT_GRPC_PORT=70000 is not a port/);
    assert.throws(() => defaultPorts({ EGRESS_PROXY_PORT: '-1' }), /EGRESS_PROXY_PORT=-1 is not a port/);
  });

  it('checks only the ports that are set, of what this start binds', () => {
    const p = defaultPorts({ TALON_NATS_PORT: '4223', TALON_PGLITE_PORT: '5433', VAULT_GRPC_PORT: '7404', SANDBOX_GRPC_PORT: '7405' });
    assert.deepEqual(setPorts(p, { services: ['vault', 'gateway'], embedded: true }), [
      { port: 4223, variable: 'TALON_NATS_PORT' },
      { port: 5433, variable: 'TALON_PGLITE_PORT' },
      { port: 8080, variable: 'TALON_GATEWAY_PORT' },
      { port: 7404, variable: 'VAULT_GRPC_PORT' },
    ]);
    assert.deepEqual(
      setPorts(p, { services: [], embedded: false }).map((x) => x.variable),
      ['TALON_NATS_PORT'],
      'an operator’s PostgreSQL: no PGlite port',
    );
  });

  it('says which variable holds a taken port and how to get out of it', () => {
    assert.equal(
      portTakenMessage('TALON_NATS_PORT', 4223),
      'TALON_NATS_PORT=4223 is in use by another process; choose another or unset it to pick a free port',
    );
    assert.equal(
      portTakenMessage('TALON_GATEWAY_PORT', 8080),
      'TALON_GATEWAY_PORT=8080 is in use by another process; set TALON_GATEWAY_PORT to another port (0 picks a free one)',
    );
  });
});

describe('the run file', () => {
  it('reads back what is written', () => {
    assert.deepEqual(parseRunInfo(serializeRunInfo(info)), info);
  });

  it('tells nothing when it is not one', () => {
    for (const text of ['', '{', 'null', '[]', '{"pid":1}', JSON.stringify({ ...info, pid: 0 }), JSON.stringify({ ...info, natsUrl: 7 })])
      assert.equal(parseRunInfo(text), undefined, text);
    const badPort = { ...info, ports: { ...info.ports, grpc: { ...info.ports.grpc, vault: 70_000 } } };
    assert.equal(parseRunInfo(JSON.stringify(badPort)), undefined);
  });
});

describe('where the CLI finds a service', () => {
  it('takes the running platform’s ports before the variables', () => {
    assert.deepEqual(where('vault', { VAULT_GRPC_PORT: '7404' }), { ok: true, address: '127.0.0.1:41014', from: RUN_FILE });
    assert.deepEqual(where('nats', { TALON_NATS_PORT: '4223' }), { ok: true, address: 'nats://127.0.0.1:41001', from: RUN_FILE });
    assert.deepEqual(where('memory', {}), { ok: true, address: '127.0.0.1:41013', from: RUN_FILE });
  });

  it('lets a whole address point elsewhere (an admin container)', () => {
    assert.deepEqual(where('vault', { TALON_VAULT_ADDR: 'vault:7404' }), { ok: true, address: 'vault:7404', from: 'TALON_VAULT_ADDR' });
    assert.deepEqual(where('nats', { TALON_NATS_URL: 'nats://nats-1:4222,nats://nats-2:4222' }), {
      ok: true,
      address: 'nats://nats-1:4222,nats://nats-2:4222',
      from: 'TALON_NATS_URL',
    });
    assert.deepEqual(where('vault', { TALON_VAULT_ADDR: ' ' }), { ok: true, address: '127.0.0.1:41014', from: RUN_FILE }, 'blank is unset');
  });

  it('falls back to the variable that set the port when no talon up runs there', () => {
    const absent: RunState = { kind: 'absent' };
    assert.deepEqual(where('vault', { VAULT_GRPC_PORT: '7404' }, absent), { ok: true, address: '127.0.0.1:7404', from: 'VAULT_GRPC_PORT' });
    assert.deepEqual(where('nats', { TALON_NATS_PORT: '4223' }, absent), {
      ok: true,
      address: 'nats://127.0.0.1:4223',
      from: 'TALON_NATS_PORT',
    });
  });

  it('says Talon is not running there instead of trying a port another Talon may hold', () => {
    for (const env of [{}, { VAULT_GRPC_PORT: '0' }, { VAULT_GRPC_PORT: 'x' }]) {
      assert.deepEqual(where('vault', env, { kind: 'absent' }), {
        ok: false,
        reason: 'not-running',
        message: `Talon is not running under TALON_HOME=${HOME}; start it with \`talon up\` (or set TALON_HOME to the folder of the Talon you mean)`,
      });
    }
    const stale = where('nats', {}, { kind: 'stale', pid: 99 });
    assert.equal(stale.ok, false);
    assert.equal(
      !stale.ok && stale.message,
      `Talon is not running under TALON_HOME=${HOME}: the talon up that wrote ${RUN_FILE} (pid 99) has exited; start it with \`talon up\``,
    );
  });

  it('names a service the running platform was started without', () => {
    const r = where('sandbox', { SANDBOX_GRPC_PORT: '7405' });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.reason, 'not-started');
    assert.match(!r.ok ? r.message : '', /TALON_HOME=\/srv\/talon-a \(pid 4242\) was started without sandbox/);
  });
});
