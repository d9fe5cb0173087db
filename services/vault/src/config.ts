import { commonFields } from '@talon/kit/service';
import { ConfigError, databaseUrl, int, list, loadConfig, oneOf, optionalStr, str, type ConfigOf } from '@talon/kit/config';
import { ATTESTATION_MODES, attestationProblems } from './attestation/settings.ts';
import { LOCAL_ENDPOINT_EXPECT } from './attestation/http-verifier.ts';
import { TSM_REPORT_DIR } from './attestation/tsm.ts';
import { MEASUREMENT_HEX } from './attestation/types.ts';
import { DEFAULT_ROTATE_AFTER, KDF_DEFAULT, KDF_MAXIMUM, KDF_MINIMUM } from './crypto.ts';

export function vaultSpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('vault', env),
    databaseUrl: databaseUrl('VAULT_DATABASE_URL', {
      doc: "PostgreSQL URL for the vault's own role and schema (talon up derives it).",
    }),
    passphrase: optionalStr('TALON_VAULT_PASSPHRASE', {
      doc: 'Master passphrase that unseals the vault at start (the first start creates the keyring with it). Unset: the vault starts sealed; unseal with `talon vault unseal`. Never written to disk.',
      secret: true,
    }),
    dbPoolMax: int('VAULT_DB_POOL_MAX', { doc: 'Maximum PostgreSQL connections held by the vault.', default: 4, min: 1, max: 100 }),
    kdfMemoryKiB: int('VAULT_KDF_MEMORY_KIB', {
      doc: 'Argon2id memory cost (KiB) for a new keyring or passphrase change; unseal uses the parameters stored with the keyring.',
      default: KDF_DEFAULT.memoryKiB,
      min: KDF_MINIMUM.memoryKiB,
      max: KDF_MAXIMUM.memoryKiB,
    }),
    kdfPasses: int('VAULT_KDF_PASSES', {
      doc: 'Argon2id passes (time cost) for a new keyring or passphrase change.',
      default: KDF_DEFAULT.passes,
      min: KDF_MINIMUM.passes,
      max: KDF_MAXIMUM.passes,
    }),
    kdfParallelism: int('VAULT_KDF_PARALLELISM', {
      doc: 'Argon2id lanes for a new keyring or passphrase change.',
      default: KDF_DEFAULT.parallelism,
      min: KDF_MINIMUM.parallelism,
      max: KDF_MAXIMUM.parallelism,
    }),
    rotateAfter: int('VAULT_KEY_ROTATE_AFTER', {
      doc: 'Encryptions per data key before the vault rotates to a new one automatically (AES-GCM random nonces: keep far below 2^32).',
      default: DEFAULT_ROTATE_AFTER,
      min: 1,
      max: 2 ** 32,
    }),
    auditRetentionDays: int('VAULT_AUDIT_RETENTION_DAYS', {
      doc: 'Days of vault audit records kept; older ones are deleted hourly. 0 keeps everything.',
      default: 90,
      min: 0,
    }),
    // Confidential computing (docs/confidential-computing.md): the key is derived only after attestation passes.
    attestation: oneOf('VAULT_ATTESTATION', ATTESTATION_MODES, {
      doc: 'Remote attestation before every unseal: none; sev-snp (configfs-tsm report checked here against the VCEK and measurements); tdx (configfs-tsm quote checked by the local verifier); http (the local verifier agent attests on its own). Any failure keeps the vault sealed.',
      default: 'none',
    }),
    attestationMeasurements: list('VAULT_ATTESTATION_MEASUREMENTS', {
      doc: 'Allowed launch measurements (SEV-SNP MEASUREMENT or TDX MRTD), comma-separated, 96 hex characters each. Required for sev-snp; passed to the verifier otherwise.',
      default: [],
      item: (v) => MEASUREMENT_HEX.test(v.toLowerCase()),
      expect: 'a comma-separated list of 96-character hex measurements',
    }),
    attestationTrustAnchor: optionalStr('VAULT_ATTESTATION_TRUST_ANCHOR_FILE', {
      doc: "sev-snp: path to the chip's VCEK (PEM or DER certificate, optionally followed by the ASK and ARK, or a PEM public key).",
    }),
    attestationVerifierUrl: optionalStr('VAULT_ATTESTATION_VERIFIER_URL', {
      doc: `tdx and http: the local verifier agent, ${LOCAL_ENDPOINT_EXPECT}; it answers the JSON protocol of docs/confidential-computing.md.`,
      pattern: /^(unix:\/|http:\/\/(127\.0\.0\.1|\[::1\])[:/])/,
    }),
    attestationTsmDir: str('VAULT_ATTESTATION_TSM_DIR', {
      doc: 'sev-snp and tdx: the configfs-tsm report directory the evidence is read from.',
      default: TSM_REPORT_DIR,
    }),
    attestationTimeoutMs: int('VAULT_ATTESTATION_TIMEOUT_MS', {
      doc: 'Time for collecting and verifying the evidence before an unseal fails.',
      default: 10_000,
      min: 100,
      max: 300_000,
    }),
  };
}

export type VaultConfig = ConfigOf<ReturnType<typeof vaultSpec>>;

/** Loads the configuration without the passphrase (read once by takePassphrase, never kept in the frozen config). */
export function loadVaultConfig(env: Record<string, string | undefined> = process.env): VaultConfig {
  const cfg = loadConfig('vault', vaultSpec(env), { ...env, TALON_VAULT_PASSPHRASE: undefined });
  const problems = attestationProblems(cfg);
  if (problems.length > 0) throw new ConfigError('vault', problems);
  return cfg;
}

/** Reads TALON_VAULT_PASSPHRASE once and removes it from the environment, so child processes and later reads never see it. */
export function takePassphrase(env: Record<string, string | undefined> = process.env): Buffer | undefined {
  const raw = env.TALON_VAULT_PASSPHRASE;
  delete env.TALON_VAULT_PASSPHRASE;
  if (raw === undefined || raw === '') return undefined;
  return Buffer.from(raw, 'utf8');
}
