// Forward-only migrations of the `vault` schema. Never edit a released step; add one.
import type { Migration } from '@talon/kit';

export const VAULT_SCHEMA = 'vault';

export const vaultMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'keyring, encrypted secrets, audit',
    sql: `
      create table vault.keyring (
        id integer primary key check (id = 1),
        kdf text not null,
        kdf_params jsonb not null,
        salt bytea not null,
        check_nonce bytea not null,
        check_ciphertext bytea not null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      );
      create table vault.data_keys (
        id integer primary key,
        wrapped_key bytea not null,
        wrap_nonce bytea not null,
        uses bigint not null default 0,
        active boolean not null default false,
        created_at timestamptz not null default now(),
        retired_at timestamptz
      );
      create unique index data_keys_one_active on vault.data_keys (active) where active;
      create table vault.encrypted_secrets (
        owner text not null,
        name text not null,
        version integer not null,
        key_id integer not null references vault.data_keys(id),
        nonce bytea not null,
        ciphertext bytea not null,
        policy jsonb not null,
        created_at timestamptz not null default now(),
        deleted_at timestamptz,
        primary key (owner, name, version)
      );
      create table vault.audit_log (
        id bigint generated always as identity primary key,
        at timestamptz not null default now(),
        caller text not null,
        action text not null,
        owner text not null default '',
        secret_name text not null default '',
        host text not null default '',
        principal text not null default '',
        allowed boolean not null,
        reason text not null
      );
      create index audit_log_at on vault.audit_log (at desc);
    `,
  },
];
