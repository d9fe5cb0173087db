// Forward-only migrations of the `vault` schema. Never edit a released step; add one.
// Nothing here ever holds a plaintext value or key: data keys are stored wrapped by the
// key-encryption key (which is never stored), secrets as AES-256-GCM ciphertext.
import type { Migration } from '@talon/kit/db';

export const VAULT_SCHEMA = 'vault';

export const vaultMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'keyring, data keys, encrypted secrets, audit',
    sql: `
      -- Change counter egress polls (Status.epoch) to drop its caches; shared by replicas.
      create table vault.state (
        id integer primary key check (id = 1),
        epoch bigint not null default 0
      );
      insert into vault.state (id, epoch) values (1, 0);

      -- One row, created by the first unseal: how to derive the KEK from the
      -- passphrase, and a value only that KEK opens (tells a wrong passphrase apart).
      create table vault.keyring (
        id integer primary key check (id = 1),
        kdf text not null check (kdf = 'argon2id'),
        kdf_params jsonb not null,
        salt bytea not null check (octet_length(salt) >= 16),
        check_nonce bytea not null check (octet_length(check_nonce) = 12),
        check_ciphertext bytea not null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      );

      -- Data keys wrapped (AES-256-GCM, aad = key id) by the KEK. "uses" counts
      -- encryptions so a key retires well below GCM's random-nonce limit.
      create table vault.data_keys (
        id integer primary key check (id > 0),
        wrapped_key bytea not null,
        wrap_nonce bytea not null check (octet_length(wrap_nonce) = 12),
        uses bigint not null default 0,
        active boolean not null default false,
        created_at timestamptz not null default now(),
        retired_at timestamptz
      );
      create unique index data_keys_one_active on vault.data_keys (active) where active;

      -- aad = (owner, name, version, key_id, sha256(policy)): a row copied onto
      -- another, or a policy edited in place, fails to decrypt.
      create table vault.encrypted_secrets (
        owner text not null,
        name text not null,
        version integer not null check (version > 0),
        key_id integer not null references vault.data_keys(id),
        nonce bytea not null check (octet_length(nonce) = 12),
        ciphertext bytea not null,
        policy jsonb not null,
        created_at timestamptz not null default now(),
        superseded_at timestamptz,
        primary key (owner, name, version)
      );
      create unique index encrypted_secrets_live on vault.encrypted_secrets (owner, name) where superseded_at is null;

      -- Who touched which secret, for which host and principal, allowed or not and
      -- why. Never a value.
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
        reason text not null,
        request_id text not null default ''
      );
      create index audit_log_at on vault.audit_log (at desc);
    `,
  },
  {
    version: 2,
    name: 'hash-chained audit',
    sql: `
      -- Tamper evidence (packages/kit/src/audit-chain.ts): each row carries the hash
      -- of the row before it and its own. Rows written before this are left empty.
      alter table vault.audit_log
        add column prev_hash text not null default '',
        add column hash text not null default '';

      -- The chain's head, one row. Writers lock it (select ... for update) to link
      -- and insert under one global order, whichever replica writes. anchor_* is
      -- the newest row retention deleted: the oldest kept row must link to it.
      -- An empty hash is the genesis (no row chained yet).
      create table vault.audit_chain_head (
        id integer primary key check (id = 1),
        last_id bigint not null default 0,
        hash text not null default '',
        anchor_id bigint not null default 0,
        anchor_hash text not null default ''
      );
      insert into vault.audit_chain_head (id) values (1);
    `,
  },
];
