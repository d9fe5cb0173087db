import { commonFields, int, loadConfig, optionalStr, str, type ConfigOf } from '@talon/kit';

export function vaultSpec(env: Record<string, string | undefined> = process.env) {
  return {
    ...commonFields('vault', env),
    databaseUrl: str('VAULT_DATABASE_URL', {
      doc: "PostgreSQL URL for the vault's own role and schema (talon up derives it).",
      secret: true,
      pattern: /^postgres(ql)?:\/\//,
      expect: 'a postgres:// URL',
    }),
    passphrase: optionalStr('TALON_VAULT_PASSPHRASE', {
      doc: 'Master passphrase that unseals the vault at start. Unset: the vault starts sealed; unseal with `talon vault unseal`. Never written to disk.',
      secret: true,
    }),
    dbPoolMax: int('VAULT_DB_POOL_MAX', { doc: 'Maximum PostgreSQL connections held by the vault.', default: 4, min: 1, max: 100 }),
  };
}

export type VaultConfig = ConfigOf<ReturnType<typeof vaultSpec>>;

export function loadVaultConfig(env: Record<string, string | undefined> = process.env): VaultConfig {
  return loadConfig('vault', vaultSpec(env), env);
}
