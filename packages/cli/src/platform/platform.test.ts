import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICES } from '@talon/kit';
import { defaultPorts, Platform } from './platform.ts';

describe('service environments', () => {
  const home = mkdtempSync(join(tmpdir(), 'talon-env-'));
  const p = new Platform({
    home,
    ports: defaultPorts({}),
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
    rmSync(home, { recursive: true, force: true });
  });
});
