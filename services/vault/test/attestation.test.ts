// The unseal path under remote attestation, against a real PostgreSQL (PGlite on
// loopback, or the native server with TALON_TEST_DATABASE=native): a verifier that
// refuses or throws keeps the vault sealed (no keyring is even created), fresh SNP
// evidence with an allowed measurement unseals, and without attestation nothing changes.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createLogger } from '@talon/kit/log';
import { createPool, migrate, type Pool } from '@talon/kit/db';
import { TalonError } from '@talon/kit/errors';
import { startSuiteDatabase } from '@talon/testkit';
import { AttestationGate } from '../src/attestation/gate.ts';
import { SnpVerifier } from '../src/attestation/snp.ts';
import { NoEvidence } from '../src/attestation/tsm.ts';
import { FIXTURE_MEASUREMENT, fakeSnpSource } from '../src/attestation/fixtures/snp-fixture.ts';
import type { Verifier } from '../src/attestation/types.ts';
import { AuditWriter } from '../src/audit.ts';
import { KDF_MINIMUM } from '../src/crypto.ts';
import { VAULT_SCHEMA, vaultMigrations } from '../src/migrations.ts';
import { VaultStore } from '../src/store.ts';
import { Vault } from '../src/vault.ts';

const PASS = 'correct horse battery staple';
const pass = (s = PASS) => Buffer.from(s);
const log = createLogger({ service: 'vault-attestation-test', level: 'silent' });
const refusing: Verifier = { name: 'refuses', verify: () => ({ ok: false, code: 'verifier_refused', reason: 'not a TEE' }) };
const throwing: Verifier = {
  name: 'throws',
  verify: () => {
    throw new Error('verifier crashed');
  },
};

describe('vault unseal behind attestation (real PostgreSQL)', () => {
  let pool: Pool;
  let stopDb: () => Promise<void>;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const snpGate = (measurements = [FIXTURE_MEASUREMENT]) =>
    new AttestationGate({
      source: fakeSnpSource(privateKey),
      verifier: new SnpVerifier({ vcek: publicKey, measurements }),
      timeoutMs: 5000,
    });
  const gateWith = (verifier: Verifier) => new AttestationGate({ source: new NoEvidence(), verifier, timeoutMs: 5000 });
  const newVault = (attestation?: AttestationGate) =>
    new Vault({ store: new VaultStore(pool), audit: new AuditWriter(pool), log, kdf: KDF_MINIMUM, rotateAfter: 2 ** 24, attestation });
  const rows = async (sql: string) => (await pool.query(sql)).rows;
  const unsealAudit = async () =>
    (await rows(`select action, allowed, reason from vault.audit_log order by id`)).map((a) => `${a.action}:${a.allowed}:${a.reason}`);

  before(async () => {
    const suiteDb = await startSuiteDatabase();
    const url = suiteDb.url;
    stopDb = suiteDb.stop;
    pool = createPool(url, { max: 4, applicationName: 'vault-attestation' });
    await migrate(pool, VAULT_SCHEMA, vaultMigrations);
  });
  after(async () => {
    await pool?.end();
    await stopDb?.();
  });
  beforeEach(async () => {
    await pool.query('truncate vault.encrypted_secrets, vault.data_keys, vault.keyring, vault.audit_log');
  });

  it('a refusing verifier: the passphrase does not unseal, and no keyring is created', async () => {
    const v = newVault(gateWith(refusing));
    await assert.rejects(v.unseal(pass(), 'admin'), (e: TalonError) => {
      assert.equal(e.code, 'permission_denied');
      assert.match(e.message, /^attestation failed \(verifier_refused\): not a TEE\. The vault stays sealed;/);
      assert.ok(!e.message.includes(PASS));
      return true;
    });
    assert.equal(v.sealed, true);
    assert.deepEqual(await rows('select * from vault.keyring'), [], 'no key was derived');
    assert.deepEqual(await unsealAudit(), ['unseal:false:attestation_failed:verifier_refused']);
  });

  it('a throwing verifier keeps an existing keyring sealed, also for a passphrase change', async () => {
    await newVault().unseal(pass(), 'admin');
    const v = newVault(gateWith(throwing));
    await assert.rejects(v.unseal(pass(), 'operator-env'), (e: TalonError) => e.code === 'unavailable' && /verifier_error/.test(e.message));
    assert.equal(v.sealed, true);
    await assert.rejects(v.changePassphrase(pass(), pass('another long passphrase'), 'admin'), /attestation failed \(verifier_error\)/);
    assert.equal((await newVault().unseal(pass(), 'admin')).sealed, false, 'the passphrase was not changed');
    assert.deepEqual((await unsealAudit()).slice(1, 3), [
      'unseal:false:attestation_failed:verifier_error',
      'change_passphrase:false:attestation_failed:verifier_error',
    ]);
  });

  it('fresh SEV-SNP evidence with an allowed measurement unseals; another measurement does not', async () => {
    const v = newVault(snpGate());
    const st = await v.unseal(pass(), 'admin');
    assert.equal(st.sealed, false);
    assert.equal(st.keyringCreated, true);
    await v.seal('admin');

    const other = newVault(snpGate(['ab'.repeat(48)]));
    await assert.rejects(other.unseal(pass(), 'admin'), /attestation failed \(measurement_not_allowed\).*VAULT_ATTESTATION_MEASUREMENTS/);
    assert.equal(other.sealed, true);
    assert.equal((await v.unseal(pass(), 'admin')).sealed, false);
    assert.deepEqual(await unsealAudit(), [
      'unseal:true:keyring_created',
      'seal:true:allowed',
      'unseal:false:attestation_failed:measurement_not_allowed',
      'unseal:true:allowed',
    ]);
  });

  it('attestation passes but the passphrase is wrong: still wrong_passphrase', async () => {
    await newVault().unseal(pass(), 'admin');
    await assert.rejects(newVault(snpGate()).unseal(pass('not the passphrase'), 'admin'), (e: TalonError) => e.code === 'wrong_passphrase');
  });

  it('without attestation (VAULT_ATTESTATION=none) unseal is unchanged', async () => {
    const v = newVault();
    assert.equal((await v.unseal(pass(), 'admin')).sealed, false);
    assert.deepEqual(await unsealAudit(), ['unseal:true:keyring_created']);
  });
});
