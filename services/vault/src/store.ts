// SQL of the vault schema. Rows hold ciphertext, wrapped keys and metadata only.
import type { Pool, PoolClient } from '@talon/kit/db';
import { checkKdfParams, type KdfParams, type Sealed } from './crypto.ts';
import { KeyringDamaged, SecretCorrupt } from './errors.ts';
import { storedPolicy, type StoredPolicy } from './policy.ts';

/** Notified with the new epoch by every bumpEpoch (epoch-listener.ts listens on it). */
export const EPOCH_CHANNEL = 'talon_vault_epoch';

export type Queryable = Pick<Pool, 'query'> | PoolClient;

export interface KeyringRow {
  kdfParams: KdfParams;
  salt: Buffer;
  check: Sealed;
}

export interface DataKeyRow {
  id: number;
  wrapped: Sealed;
  uses: number;
  active: boolean;
}

export interface SecretRow {
  owner: string;
  name: string;
  version: number;
  keyId: number;
  nonce: Buffer;
  ciphertext: Buffer;
  policy: StoredPolicy;
  createdAtMs: number;
}

export interface StatusRow {
  epoch: number;
  secrets: number;
  activeKeyId: number;
  activeKeyUses: number;
  kdfParams: KdfParams | undefined;
}

function kdfFromJson(v: unknown): KdfParams {
  const o = v as Partial<KdfParams> | null;
  try {
    return checkKdfParams({ memoryKiB: Number(o?.memoryKiB), passes: Number(o?.passes), parallelism: Number(o?.parallelism) });
  } catch (err) {
    throw new KeyringDamaged(`its stored Argon2id parameters are invalid (${(err as Error).message})`);
  }
}

const SECRET_COLUMNS = `owner, name, version, key_id, nonce, ciphertext, policy, (extract(epoch from created_at) * 1000)::bigint as created_ms`;

interface SecretDbRow {
  owner: string;
  name: string;
  version: number;
  key_id: number;
  nonce: Buffer;
  ciphertext: Buffer;
  policy: unknown;
  created_ms: string;
}

function secretRow(r: SecretDbRow): SecretRow {
  return {
    owner: r.owner,
    name: r.name,
    version: r.version,
    keyId: r.key_id,
    nonce: r.nonce,
    ciphertext: r.ciphertext,
    policy: policyOf(r),
    createdAtMs: Number(r.created_ms),
  };
}

function policyOf(r: SecretDbRow): StoredPolicy {
  try {
    return storedPolicy(r.policy);
  } catch {
    throw new SecretCorrupt(r.name, r.version);
  }
}

export class VaultStore {
  readonly pool: Pool;
  constructor(pool: Pool) {
    this.pool = pool;
  }

  async tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('begin');
      const out = await fn(c);
      await c.query('commit');
      return out;
    } catch (err) {
      await c.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async keyring(q: Queryable = this.pool, opts: { forUpdate?: boolean } = {}): Promise<KeyringRow | undefined> {
    const { rows } = await q.query<{ kdf_params: unknown; salt: Buffer; check_nonce: Buffer; check_ciphertext: Buffer }>(
      `select kdf_params, salt, check_nonce, check_ciphertext from vault.keyring where id = 1${opts.forUpdate ? ' for update' : ''}`,
    );
    const r = rows[0];
    if (!r) return undefined;
    return { kdfParams: kdfFromJson(r.kdf_params), salt: r.salt, check: { nonce: r.check_nonce, ciphertext: r.check_ciphertext } };
  }

  /** Creates the keyring and the first data key; false when another replica won the race. */
  async initialize(k: KeyringRow, first: { id: number; wrapped: Sealed }): Promise<boolean> {
    return this.tx(async (c) => {
      const ins = await c.query(
        `insert into vault.keyring (id, kdf, kdf_params, salt, check_nonce, check_ciphertext)
         values (1, 'argon2id', $1, $2, $3, $4) on conflict (id) do nothing`,
        [JSON.stringify(k.kdfParams), k.salt, k.check.nonce, k.check.ciphertext],
      );
      if (ins.rowCount === 0) return false;
      await c.query(`insert into vault.data_keys (id, wrapped_key, wrap_nonce, uses, active) values ($1, $2, $3, 0, true)`, [
        first.id,
        first.wrapped.ciphertext,
        first.wrapped.nonce,
      ]);
      return true;
    });
  }

  async replaceKeyring(c: PoolClient, k: KeyringRow, rewrapped: ReadonlyArray<{ id: number; wrapped: Sealed }>): Promise<void> {
    await c.query(
      `update vault.keyring set kdf_params = $1, salt = $2, check_nonce = $3, check_ciphertext = $4, updated_at = now() where id = 1`,
      [JSON.stringify(k.kdfParams), k.salt, k.check.nonce, k.check.ciphertext],
    );
    for (const w of rewrapped) {
      await c.query(`update vault.data_keys set wrapped_key = $2, wrap_nonce = $3 where id = $1`, [
        w.id,
        w.wrapped.ciphertext,
        w.wrapped.nonce,
      ]);
    }
  }

  async dataKeys(q: Queryable = this.pool): Promise<DataKeyRow[]> {
    const { rows } = await q.query<{ id: number; wrapped_key: Buffer; wrap_nonce: Buffer; uses: string; active: boolean }>(
      `select id, wrapped_key, wrap_nonce, uses, active from vault.data_keys order by id`,
    );
    return rows.map((r) => ({
      id: r.id,
      wrapped: { nonce: r.wrap_nonce, ciphertext: r.wrapped_key },
      uses: Number(r.uses),
      active: r.active,
    }));
  }

  async dataKey(id: number): Promise<DataKeyRow | undefined> {
    return (await this.dataKeys()).find((k) => k.id === id);
  }

  /** Counts one encryption against the active key unless it reached `limit`; undefined means rotate first. */
  async takeActiveKey(c: PoolClient, limit: number): Promise<{ id: number; uses: number } | undefined> {
    const { rows } = await c.query<{ id: number; uses: string }>(
      `update vault.data_keys set uses = uses + 1 where active and uses < $1 returning id, uses`,
      [limit],
    );
    const r = rows[0];
    return r ? { id: r.id, uses: Number(r.uses) } : undefined;
  }

  /** Retires the active key and inserts a new active one; returns the retired id (0 if none). */
  async insertActiveKey(c: PoolClient, wrappedFor: (id: number) => Sealed, initialUses: number): Promise<{ id: number; retired: number }> {
    const { rows } = await c.query<{ id: number }>(`select coalesce(max(id), 0) + 1 as id from vault.data_keys`);
    const id = rows[0]!.id;
    const ret = await c.query<{ id: number }>(`update vault.data_keys set active = false, retired_at = now() where active returning id`);
    const w = wrappedFor(id);
    await c.query(`insert into vault.data_keys (id, wrapped_key, wrap_nonce, uses, active) values ($1, $2, $3, $4, true)`, [
      id,
      w.ciphertext,
      w.nonce,
      initialUses,
    ]);
    return { id, retired: ret.rows[0]?.id ?? 0 };
  }

  /** Moves the epoch and notifies EPOCH_CHANNEL with it, delivered to every replica when `q`'s transaction commits. */
  async bumpEpoch(q: Queryable = this.pool): Promise<number> {
    const { rows } = await q.query<{ epoch: string }>(
      `with u as (update vault.state set epoch = epoch + 1 where id = 1 returning epoch)
       select epoch, pg_notify('${EPOCH_CHANNEL}', epoch::text) from u`,
    );
    return Number(rows[0]?.epoch ?? 0);
  }

  async epoch(q: Queryable = this.pool): Promise<number> {
    const { rows } = await q.query<{ epoch: string }>(`select epoch from vault.state where id = 1`);
    return Number(rows[0]?.epoch ?? 0);
  }

  async status(): Promise<StatusRow> {
    const { rows } = await this.pool.query<{ epoch: string; secrets: number; kid: number | null; uses: string | null; kdf: unknown }>(
      `select s.epoch,
              (select count(*) from vault.encrypted_secrets where superseded_at is null)::int as secrets,
              k.id as kid, k.uses, (select kdf_params from vault.keyring where id = 1) as kdf
         from vault.state s left join vault.data_keys k on k.active
        where s.id = 1`,
    );
    const r = rows[0];
    return {
      epoch: Number(r?.epoch ?? 0),
      secrets: r?.secrets ?? 0,
      activeKeyId: r?.kid ?? 0,
      activeKeyUses: Number(r?.uses ?? 0),
      kdfParams: r?.kdf ? kdfFromJson(r.kdf) : undefined,
    };
  }

  async liveSecret(owner: string, name: string, q: Queryable = this.pool): Promise<SecretRow | undefined> {
    const { rows } = await q.query<SecretDbRow>(
      `select ${SECRET_COLUMNS} from vault.encrypted_secrets where owner = $1 and name = $2 and superseded_at is null`,
      [owner, name],
    );
    return rows[0] ? secretRow(rows[0]) : undefined;
  }

  /** The live row and the epoch, read in one snapshot (Resolve's cache is keyed by that epoch). */
  async liveSecretAtEpoch(owner: string, name: string): Promise<{ row: SecretRow | undefined; epoch: number }> {
    const { rows } = await this.pool.query<SecretDbRow & { epoch: string }>({
      text: `select e.epoch, s.* from vault.state e
               left join (select ${SECRET_COLUMNS} from vault.encrypted_secrets where owner = $1 and name = $2 and superseded_at is null) s on true
              where e.id = 1`,
      values: [owner, name],
    });
    const r = rows[0];
    return { row: r && r.name !== null ? secretRow(r) : undefined, epoch: Number(r?.epoch ?? 0) };
  }

  async liveSecrets(owner: string): Promise<SecretRow[]> {
    const { rows } = await this.pool.query<SecretDbRow>(
      `select ${SECRET_COLUMNS} from vault.encrypted_secrets where owner = $1 and superseded_at is null order by name`,
      [owner],
    );
    return rows.map(secretRow);
  }

  /** Locks the secret's rows and returns the next version number and the live row. */
  async lockName(c: PoolClient, owner: string, name: string): Promise<{ nextVersion: number; live: SecretRow | undefined }> {
    const { rows } = await c.query<{ version: number; live: boolean }>(
      `select version, superseded_at is null as live from vault.encrypted_secrets where owner = $1 and name = $2 order by version desc for update`,
      [owner, name],
    );
    const live = rows.some((r) => r.live) ? await this.liveSecret(owner, name, c) : undefined;
    return { nextVersion: (rows[0]?.version ?? 0) + 1, live };
  }

  async insertSecret(c: PoolClient, r: Omit<SecretRow, 'createdAtMs'>): Promise<number> {
    await c.query(`update vault.encrypted_secrets set superseded_at = now() where owner = $1 and name = $2 and superseded_at is null`, [
      r.owner,
      r.name,
    ]);
    const { rows } = await c.query<{ ms: string }>(
      `insert into vault.encrypted_secrets (owner, name, version, key_id, nonce, ciphertext, policy)
       values ($1, $2, $3, $4, $5, $6, $7) returning (extract(epoch from created_at) * 1000)::bigint as ms`,
      [r.owner, r.name, r.version, r.keyId, r.nonce, r.ciphertext, JSON.stringify(r.policy)],
    );
    return Number(rows[0]?.ms ?? Date.now());
  }

  async deleteSecret(c: PoolClient, owner: string, name: string): Promise<number> {
    const r = await c.query(`delete from vault.encrypted_secrets where owner = $1 and name = $2`, [owner, name]);
    return r.rowCount ?? 0;
  }
}
