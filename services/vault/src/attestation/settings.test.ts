// VAULT_ATTESTATION_* from the environment to a gate: each mode's requirements are
// checked at boot (ConfigError, exit 78) and `none` keeps today's behaviour.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ConfigError } from '@talon/kit/config';
import { loadVaultConfig } from '../config.ts';
import { attestationGate } from './settings.ts';
import { readFileSync } from 'node:fs';
import type { RecordedSnpFixture } from './fixtures/snp-fixture.ts';

const fixtures = join(import.meta.dirname, 'fixtures');
const recorded = JSON.parse(readFileSync(join(fixtures, 'snp-report.json'), 'utf8')) as RecordedSnpFixture;
const base = { VAULT_DATABASE_URL: 'postgres://vault@127.0.0.1/talon' };
const load = (env: Record<string, string>) => loadVaultConfig({ ...base, ...env });
const problems = (env: Record<string, string>) => {
  try {
    load(env);
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.map((p) => p.key);
  }
};

describe('attestation configuration', () => {
  it('defaults to none: no gate', () => {
    const cfg = load({});
    assert.equal(cfg.attestation, 'none');
    assert.equal(attestationGate(cfg), undefined);
  });

  it('sev-snp needs measurements and the VCEK; tdx and http need a loopback verifier', () => {
    assert.deepEqual(problems({ VAULT_ATTESTATION: 'sev-snp' }).sort(), [
      'VAULT_ATTESTATION_MEASUREMENTS',
      'VAULT_ATTESTATION_TRUST_ANCHOR_FILE',
    ]);
    assert.deepEqual(problems({ VAULT_ATTESTATION: 'tdx' }), ['VAULT_ATTESTATION_VERIFIER_URL']);
    assert.deepEqual(problems({ VAULT_ATTESTATION: 'http', VAULT_ATTESTATION_VERIFIER_URL: 'http://kbs.example.com/attest' }), [
      'VAULT_ATTESTATION_VERIFIER_URL',
    ]);
    assert.deepEqual(problems({ VAULT_ATTESTATION: 'sgx' }), ['VAULT_ATTESTATION']);
    assert.deepEqual(problems({ VAULT_ATTESTATION_MEASUREMENTS: 'abc' }), ['VAULT_ATTESTATION_MEASUREMENTS']);
  });

  it('builds the SNP gate from the recorded test VCEK', () => {
    const cfg = load({
      VAULT_ATTESTATION: 'sev-snp',
      VAULT_ATTESTATION_MEASUREMENTS: recorded.measurement.toUpperCase(),
      VAULT_ATTESTATION_TRUST_ANCHOR_FILE: join(fixtures, 'test-vcek.pem'),
    });
    assert.equal(attestationGate(cfg)?.describe(), 'configfs-tsm evidence, sev-snp verifier');
  });

  it('stops boot naming the file when the VCEK is unreadable or not a P-384 key', () => {
    const env = { VAULT_ATTESTATION: 'sev-snp', VAULT_ATTESTATION_MEASUREMENTS: recorded.measurement };
    assert.throws(
      () => attestationGate(load({ ...env, VAULT_ATTESTATION_TRUST_ANCHOR_FILE: '/nonexistent/vcek.pem' })),
      (e: unknown) => e instanceof ConfigError && /vcek\.pem: cannot read it \(ENOENT\)/.test(e.message),
    );
    assert.throws(
      () => attestationGate(load({ ...env, VAULT_ATTESTATION_TRUST_ANCHOR_FILE: join(fixtures, 'snp-report.json') })),
      (e: unknown) => e instanceof ConfigError && /PEM or DER certificate/.test(e.message),
    );
  });

  it('builds the tdx and http gates', () => {
    const tdx = load({ VAULT_ATTESTATION: 'tdx', VAULT_ATTESTATION_VERIFIER_URL: 'http://127.0.0.1:8470/v1/attest' });
    assert.equal(attestationGate(tdx)?.describe(), 'configfs-tsm evidence, http verifier');
    const http = load({ VAULT_ATTESTATION: 'http', VAULT_ATTESTATION_VERIFIER_URL: 'unix:/run/talon/attest.sock' });
    assert.equal(attestationGate(http)?.describe(), 'none evidence, http verifier');
  });
});
