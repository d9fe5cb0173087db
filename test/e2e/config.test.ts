// A missing or bad configuration value stops boot with a message naming the key
// and how to fix it (exit code 78), before the service touches anything.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '@talon/cli/platform';

function boot(service: string, env: Record<string, string>): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'services', service, 'src', 'main.ts')], {
    env: { PATH: process.env.PATH ?? '', TALON_HOME: '/nonexistent-talon-home', ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: r.status, stderr: r.stderr };
}

describe('configuration errors stop boot with a precise message', () => {
  it('names a malformed port and a missing required URL together', () => {
    const r = boot('memory', { MEMORY_GRPC_PORT: 'eighty' });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /MEMORY_GRPC_PORT: expected an integer from 0 to 65535, got "eighty"/);
    assert.match(r.stderr, /MEMORY_DATABASE_URL: is required but not set\. Set MEMORY_DATABASE_URL to a postgres:\/\/ URL/);
    assert.match(r.stderr, /\.env\.example/);
  });

  it('never echoes a secret value it rejects', () => {
    const r = boot('vault', { VAULT_DATABASE_URL: 'mysql://root:hunter2-secret@db/x' });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /VAULT_DATABASE_URL: expected a postgres:\/\/ URL, got <hidden>/);
    assert.doesNotMatch(r.stderr, /hunter2/);
  });

  it('rejects an unknown enum value and a bad allowlist entry', () => {
    const o = boot('orchestrator', { TALON_LLM_PROVIDER: 'gemini', ORCHESTRATOR_EGRESS_URL: 'http://127.0.0.1:7480' });
    assert.equal(o.code, 78);
    assert.match(o.stderr, /TALON_LLM_PROVIDER: expected one of openai, anthropic, got "gemini"/);
    assert.match(o.stderr, /ORCHESTRATOR_EGRESS_URL: expected an absolute URL \(https:\/\/\.\.\.\)/);
    const e = boot('egress', { TALON_EGRESS_ALLOW_PRIVATE: '127.0.0.1' });
    assert.equal(e.code, 78);
    assert.match(e.stderr, /TALON_EGRESS_ALLOW_PRIVATE: expected a comma-separated list of host:port entries/);
  });

  it('rejects a bad gateway port and body limit', () => {
    const r = boot('gateway', { TALON_GATEWAY_PORT: '70000', GATEWAY_MAX_BODY_BYTES: '12' });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /TALON_GATEWAY_PORT/);
    assert.match(r.stderr, /GATEWAY_MAX_BODY_BYTES: expected an integer from 1024 to 67108864, got "12"/);
  });
});
