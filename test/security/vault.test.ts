// The vault, attacked for real: a canary set through the real CLI must never be
// readable from the database (any table, any encoding), from any admin answer or
// from a non-egress identity; rows swapped in SQL must not decrypt; a wrong
// passphrase unseals nothing; every policy mismatch is refused and audited, and
// the audit trail never holds the value. Runs on the database TALON_TEST_DATABASE picks.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createClient, unary, unaryMethodName, type TlsMaterial, type UnaryClientMethod } from '@talon/kit/grpc';
import { TalonError } from '@talon/kit/errors';
import { REPO_ROOT } from '@talon/cli/platform';
import {
  AuditChainRequest,
  AuditLogRequest,
  Placement,
  VaultAdminServiceClient,
  VaultAdminServiceService,
  VaultServiceClient,
  VaultServiceService,
  type ResolveRequest,
} from '@talon/proto';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

const PASS = `vault passphrase ${randomBytes(6).toString('hex')}`;
const WRONG = `${PASS} but wrong`;
// '+', '/' and '?' make every encoded form differ from the raw value.
const CANARY = `canary+/${randomBytes(18).toString('base64url')}?z`;
const CANARY_B = `other-secret-${randomBytes(18).toString('hex')}`;

/** Every form the canary could take if it leaked: raw, base64 (+url, unpadded), hex (both cases). */
function leakForms(v: string): string[] {
  const b = Buffer.from(v);
  return [
    v,
    b.toString('base64'),
    b.toString('base64').replace(/=+$/, ''),
    b.toString('base64url'),
    b.toString('hex'),
    b.toString('hex').toUpperCase(),
    encodeURIComponent(v),
  ];
}
function assertNoLeak(haystack: string | Buffer, where: string, values = [CANARY, CANARY_B]): void {
  const text = typeof haystack === 'string' ? haystack : haystack.toString('latin1');
  for (const v of values) for (const f of leakForms(v)) assert.ok(!text.includes(f), `${where} contains a form of a secret value`);
}

describe('vault: the only key holder', () => {
  let tp: TestPlatform;
  let addr: string;
  let db: pg.Client;
  const clients: Array<{ close(): void }> = [];

  const tls = (identity: string): TlsMaterial => tp.platform.tls(identity);
  const egress = () => {
    const c = createClient(VaultServiceClient, addr, tls('egress'), 'vault');
    clients.push(c);
    return c;
  };
  const admin = () => {
    const c = createClient(VaultAdminServiceClient, addr, tls('admin'), 'vault');
    clients.push(c);
    return c;
  };
  const resolve = (r: Partial<ResolveRequest>, identity = 'egress') => {
    const c = createClient(VaultServiceClient, addr, tls(identity), 'vault');
    clients.push(c);
    return unary(
      c,
      c.resolve,
      {
        name: 'canary',
        principal: 'orchestrator',
        host: 'api.example.com',
        port: 443,
        placement: Placement.PLACEMENT_BEARER,
        field: '',
        requestId: 'req-1',
        ...r,
      },
      { timeoutMs: 5000 },
    );
  };
  const status = () => {
    const c = egress();
    return unary(c, c.status, {});
  };
  /** Runs the real CLI as a child process with `input` on stdin. */
  const talon = (args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((res, rej) => {
      const env: Record<string, string | undefined> = { ...process.env, TALON_HOME: tp.home, VAULT_GRPC_PORT: String(tp.ports.grpc.vault) };
      delete env.TALON_VAULT_PASSPHRASE;
      const child = spawn(process.execPath, [join(REPO_ROOT, 'packages', 'cli', 'src', 'bin.ts'), ...args], {
        cwd: tp.home,
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', rej);
      child.on('close', (code) => {
        assertNoLeak(stdout + stderr, `output of talon ${args.join(' ')}`);
        res({ code, stdout, stderr });
      });
      child.stdin.end(input);
    });
  const auditRows = async () =>
    (
      await db.query<{
        action: string;
        caller: string;
        secret_name: string;
        host: string;
        principal: string;
        allowed: boolean;
        reason: string;
      }>('select * from vault.audit_log order by id')
    ).rows;
  const rejectsWith = (p: Promise<unknown>, code: string, message?: RegExp) =>
    assert.rejects(p, (e: TalonError) => {
      assert.equal(e.code, code, e.message);
      if (message) assert.match(e.message, message);
      assertNoLeak(e.message, 'an error message');
      return true;
    });

  before(async () => {
    // Started without TALON_VAULT_PASSPHRASE: the vault must come up sealed and empty.
    tp = await startTestPlatform({ services: ['vault'], llm: false });
    addr = `127.0.0.1:${tp.ports.grpc.vault}`;
    db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
  });
  after(async () => {
    for (const c of clients) c.close();
    await db?.end().catch(() => undefined);
    await tp?.stop();
  });

  it('starts sealed and empty; Resolve is refused with vault_sealed', async () => {
    const st = await status();
    assert.equal(st.sealed, true);
    assert.equal(st.initialized, false);
    await rejectsWith(resolve({}), 'vault_sealed');
    const set = await talon(['secrets', 'set', 'canary', '--host', 'api.example.com'], CANARY);
    assert.equal(set.code, 75, set.stderr);
    assert.match(set.stderr, /sealed.*talon vault unseal/);
  });

  it('the first `talon vault unseal` creates the keyring and says so', async () => {
    const r = await talon(['vault', 'unseal'], `${PASS}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Vault initialised: a new keyring \(argon2id m=\d+KiB t=\d+ p=\d+\)/);
    const st = await status();
    assert.equal(st.sealed, false);
    assert.equal(st.initialized, true);
    assert.ok(st.epoch > 0);
  });

  it('`talon secrets set` stores the canary from stdin; egress resolves it for the bound host', async () => {
    const r = await talon(['secrets', 'set', 'canary', '--host', 'api.example.com,*.example.org:8443'], `${CANARY}\n`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Stored secret canary version 1 .*bearer to api\.example\.com, \*\.example\.org:8443 for orchestrator/);
    const ok = await resolve({});
    assert.equal(Buffer.from(ok.value).toString(), CANARY, 'exactly one trailing newline was stripped');
    assert.equal(ok.version, 1);
    const sub = await resolve({ host: 'EU.Example.org.', port: 8443 });
    assert.equal(Buffer.from(sub.value).toString(), CANARY);
    const list = await talon(['secrets', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /canary\s+1\s+bearer\s+api\.example\.com,\*\.example\.org:8443\s+orchestrator\s+never/);
  });

  it('identities other than egress cannot Resolve or ScanIndex (permission_denied)', async () => {
    for (const id of ['orchestrator', 'gateway', 'admin', 'sandbox', 'memory']) {
      await rejectsWith(resolve({}, id), 'permission_denied', new RegExp(`spiffe://talon/${id}`));
      const c = createClient(VaultServiceClient, addr, tls(id), 'vault');
      clients.push(c);
      await rejectsWith(unary(c, c.scanIndex, {}), 'permission_denied');
    }
    // ... and egress cannot use the admin service.
    const c = createClient(VaultAdminServiceClient, addr, tls('egress'), 'vault');
    clients.push(c);
    await rejectsWith(unary(c, c.listSecrets, {}), 'permission_denied');
  });

  it('policy mismatches are refused with a reason, and audited before anything is released', async () => {
    const before = (await auditRows()).length;
    const cases: Array<[Partial<ResolveRequest>, string]> = [
      [{ host: 'evil.example.net' }, 'host_not_bound'],
      [{ host: 'api.example.com.evil.net' }, 'host_not_bound'],
      [{ host: 'evil-example.com' }, 'host_not_bound'],
      [{ host: 'example.org', port: 8443 }, 'host_not_bound'],
      [{ port: 80 }, 'host_not_bound'],
      [{ principal: 'skill:exfil@1.0.0' }, 'principal_not_allowed'],
      [{ principal: 'gateway' }, 'principal_not_allowed'],
      [{ placement: Placement.PLACEMENT_QUERY, field: 'key' }, 'placement_mismatch'],
      [{ placement: Placement.PLACEMENT_HEADER, field: 'x-api-key' }, 'placement_mismatch'],
    ];
    for (const [r, reason] of cases)
      await rejectsWith(resolve({ ...r, requestId: `deny-${reason}` }), 'policy_denied', new RegExp(`^${reason}: `));
    await rejectsWith(resolve({ name: 'no_such_secret' }), 'not_found');
    const rows = (await auditRows()).slice(before);
    assert.deepEqual(
      rows.map((a) => [a.action, a.caller, a.allowed, a.reason]),
      [...cases.map(([, reason]) => ['resolve', 'egress', false, reason]), ['resolve', 'egress', false, 'not_found']],
    );
    assert.equal(rows[0]!.host, 'evil.example.net:443');
    assert.equal(rows[5]!.principal, 'skill:exfil@1.0.0');
  });

  it('an expired secret is refused (secret_expired) and audited', async () => {
    const r = await talon(['secrets', 'set', 'expiring', '--host', 'api.example.com', '--expires', '8s'], 'expiring-value-1234');
    assert.equal(r.code, 0, r.stderr);
    const expiresAt = Date.parse(/expires (\S+?)\.$/m.exec(r.stdout)?.[1] ?? '');
    assert.ok(expiresAt > Date.now(), r.stdout);
    assert.equal(Buffer.from((await resolve({ name: 'expiring' })).value).toString(), 'expiring-value-1234');
    await sleep(expiresAt - Date.now() + 50);
    await rejectsWith(resolve({ name: 'expiring' }), 'policy_denied', /^secret_expired: /);
    const last = (await auditRows()).at(-1)!;
    assert.deepEqual([last.secret_name, last.allowed, last.reason], ['expiring', false, 'secret_expired']);
    assert.equal((await talon(['secrets', 'rm', 'expiring'])).code, 0);
  });

  it('a ciphertext copied onto another secret’s row (SQL) fails to decrypt with a clear error', async () => {
    const r = await talon(['secrets', 'set', 'victim', '--host', 'api.example.com'], CANARY_B);
    assert.equal(r.code, 0, r.stderr);
    // (Not resolved before the swap: a replica may serve an authentic row it already
    // read until the epoch moves; the attack is on the row as the vault reads it.)
    await db.query(
      `update vault.encrypted_secrets v set ciphertext = c.ciphertext, nonce = c.nonce, key_id = c.key_id
         from vault.encrypted_secrets c
        where v.name = 'victim' and c.name = 'canary' and v.superseded_at is null and c.superseded_at is null`,
    );
    await rejectsWith(resolve({ name: 'victim' }), 'secret_corrupt', /victim .*failed its integrity check/);
    const last = (await auditRows()).at(-1)!;
    assert.deepEqual([last.secret_name, last.allowed, last.reason], ['victim', false, 'integrity_failure']);
    // The source row is untouched and still decrypts.
    assert.equal(Buffer.from((await resolve({})).value).toString(), CANARY);
    // Copying the whole row (policy included) under another name fails the same way.
    await db.query(
      `update vault.encrypted_secrets v set ciphertext = c.ciphertext, nonce = c.nonce, key_id = c.key_id, policy = c.policy, version = c.version
         from vault.encrypted_secrets c where v.name = 'victim' and c.name = 'canary'`,
    );
    await rejectsWith(resolve({ name: 'victim' }), 'secret_corrupt');
    assert.equal((await talon(['secrets', 'rm', 'victim'])).code, 0);
  });

  it('ScanIndex gives egress fingerprints of the canary, never the canary', async () => {
    const c = egress();
    const res = await unary(c, c.scanIndex, {});
    const encoded = VaultServiceService.scanIndex.responseSerialize(res);
    const fp = res.secrets.find((s) => s.name === 'canary');
    assert.ok(fp, 'the canary is indexed');
    const raw = fp.forms.find((f) => f.encoding === 'raw')!;
    assert.deepEqual(Buffer.from(raw.sha256), createHash('sha256').update(CANARY).digest());
    assert.equal(raw.length, Buffer.byteLength(CANARY));
    assert.deepEqual(
      fp.forms.map((f) => f.encoding),
      // html is left out: the canary has no character HTML escapes, so that form equals raw.
      ['raw', 'base64', 'base64url', 'hex', 'hex_upper', 'percent', 'json', 'reversed', 'rot13'],
    );
    assertNoLeak(encoded, 'ScanIndex response');
  });

  it('no admin RPC returns the value: every answer (and error) of VaultAdminService is checked', async () => {
    const a = admin();
    const seen = new Set<string>();
    const call = async <Req, Res>(method: UnaryClientMethod<Req, Res>, req: NoInfer<Req>, timeoutMs = 30_000) => {
      const name = unaryMethodName(a, method);
      seen.add(name);
      const res = await unary(a, method, req, { timeoutMs });
      const def = Object.entries(VaultAdminServiceService).find(([k]) => k === name)?.[1];
      assert.ok(def, `${name} is a VaultAdminService method`);
      const bytes = (def.responseSerialize as (v: unknown) => Buffer)(res);
      assertNoLeak(bytes, `${name} response`);
      assertNoLeak(JSON.stringify(res), `${name} response`);
      return res;
    };
    await call(a.status, {});
    const list = await call(a.listSecrets, {});
    assert.ok(list.secrets.some((s) => s.name === 'canary'));
    await call(a.auditLog, AuditLogRequest.fromPartial({ limit: 1000 }));
    await call(a.auditChain, AuditChainRequest.fromPartial({ limit: 1000 }));
    await call(a.setSecret, {
      name: 'probe',
      value: Buffer.from(CANARY),
      policy: { hosts: ['api.example.com'], placement: Placement.PLACEMENT_BEARER, field: '', principals: [], expiresAtMs: 0 },
    });
    await call(a.rotateSecret, { name: 'probe', value: Buffer.from(CANARY_B) });
    await call(a.deleteSecret, { name: 'probe' });
    await call(a.rotateKey, {});
    await call(a.seal, {});
    await call(a.unseal, { passphrase: PASS });
    await call(a.changePassphrase, { oldPassphrase: PASS, newPassphrase: `${PASS} v2` });
    await call(a.changePassphrase, { oldPassphrase: `${PASS} v2`, newPassphrase: PASS });
    assert.deepEqual([...seen].sort(), Object.keys(VaultAdminServiceService).sort(), 'every admin method was probed');
    // Errors carry no value either (a value sent with an invalid policy).
    await rejectsWith(
      unary(a, a.setSecret, {
        name: 'probe',
        value: Buffer.from(CANARY),
        policy: { hosts: ['not a host!'], placement: 0, field: '', principals: [], expiresAtMs: 0 },
      }),
      'invalid_argument',
    );
    // The canary still resolves after the key rotation and passphrase round trip.
    assert.equal(Buffer.from((await resolve({})).value).toString(), CANARY);
  });

  it('a wrong passphrase unseals nothing and changes nothing; the right one still works', async () => {
    const sealed = await talon(['vault', 'seal']);
    assert.equal(sealed.code, 0, sealed.stderr);
    await rejectsWith(resolve({}), 'vault_sealed');
    const snapshot = async () =>
      JSON.stringify(
        (
          await db.query(
            'select k.*, d.*, s.* from vault.keyring k, vault.data_keys d, vault.encrypted_secrets s order by d.id, s.name, s.version',
          )
        ).rows,
      );
    const before = await snapshot();
    const epoch = (await status()).epoch;
    const wrong = await talon(['vault', 'unseal'], `${WRONG}\n`);
    assert.equal(wrong.code, 77);
    assert.match(wrong.stderr, /wrong passphrase/);
    const st = await status();
    assert.equal(st.sealed, true);
    assert.equal(st.epoch, epoch, 'a failed unseal is not a state change');
    assert.equal(await snapshot(), before);
    await rejectsWith(resolve({}), 'vault_sealed');
    const last = (await auditRows()).filter((a) => a.action === 'unseal').at(-1)!;
    assert.deepEqual([last.caller, last.allowed, last.reason], ['admin', false, 'wrong_passphrase']);
    const right = await talon(['vault', 'unseal'], `${PASS}\n`);
    assert.equal(right.code, 0, right.stderr);
    assert.match(right.stdout, /Vault unsealed/);
    assert.equal(Buffer.from((await resolve({})).value).toString(), CANARY);
  });

  it('the audit trail names who, what, where and why, and never holds a value', async () => {
    const ad = admin();
    const audit = await unary(ad, ad.auditLog, AuditLogRequest.fromPartial({ limit: 1000 }));
    assertNoLeak(JSON.stringify(audit), 'AuditLog response');
    const allowed = audit.records.filter((r) => r.action === 'resolve' && r.allowed);
    assert.ok(allowed.length >= 3);
    assert.ok(
      allowed.every(
        (r) => r.caller === 'egress' && r.secretName !== '' && r.host !== '' && r.principal === 'orchestrator' && r.reason === 'allowed',
      ),
    );
    const rows = await db.query('select t::text as row from vault.audit_log t');
    assert.ok(rows.rows.length > 20);
    for (const r of rows.rows as Array<{ row: string }>) assertNoLeak(r.row, 'an audit row');
  });

  it('no table of any schema holds the canary in any encoding (full SQL dump)', async () => {
    const rels = await db.query<{ ns: string; rel: string }>(
      `select n.nspname as ns, c.relname as rel from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'm', 'v') order by 1, 2`,
    );
    let dumped = 0;
    let sawCiphertextRow = false;
    for (const { ns, rel } of rels.rows) {
      const q = `select t::text as row from "${ns.replace(/"/g, '""')}"."${rel.replace(/"/g, '""')}" t`;
      let rows: Array<{ row: string }>;
      try {
        rows = (await db.query<{ row: string }>(q)).rows;
      } catch {
        continue; // a catalog view this role may not read, or a function-backed view that fails here
      }
      dumped += 1;
      for (const { row } of rows) {
        assertNoLeak(row, `${ns}.${rel}`);
        assertNoLeak(row.toLowerCase(), `${ns}.${rel} (lower-cased)`, [CANARY.toLowerCase()]);
        if (ns === 'vault' && rel === 'encrypted_secrets' && row.includes('canary')) sawCiphertextRow = true;
      }
    }
    assert.ok(dumped > 50, `dumped ${dumped} relations`);
    assert.ok(sawCiphertextRow, 'the dump did see the canary’s (encrypted) row, so the search ran over real data');
  });

  it('a restart with TALON_VAULT_PASSPHRASE unseals before serving; a wrong one leaves the vault sealed', async () => {
    const restartWith = async (passphrase: string) => {
      await tp.platform.stopService('vault');
      (tp.platform.opts.env ??= {}).TALON_VAULT_PASSPHRASE = passphrase;
      tp.platform.startService('vault');
      await tp.platform.waitHealthy(['vault']);
    };
    try {
      await restartWith(WRONG);
      assert.equal((await status()).sealed, true);
      assert.match(tp.log('vault'), /TALON_VAULT_PASSPHRASE did not unseal the vault; it stays sealed/);
      await rejectsWith(resolve({}), 'vault_sealed');
      await restartWith(PASS);
      assert.equal((await status()).sealed, false, 'unsealed by the time it reports SERVING');
      assert.equal(Buffer.from((await resolve({})).value).toString(), CANARY);
    } finally {
      delete tp.platform.opts.env?.TALON_VAULT_PASSPHRASE;
    }
  });

  it('no file under TALON_HOME (logs, embedded database files) holds the canary or the passphrase', async () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        const s = statSync(p);
        if (s.isDirectory()) walk(p);
        else if (s.isFile() && s.size < 256 * 1024 * 1024) files.push(p);
      }
    };
    walk(tp.home);
    assert.ok(existsSync(join(tp.home, 'logs', 'vault.log')));
    for (const f of files) {
      const content = readFileSync(f);
      assertNoLeak(content, f);
      assert.ok(!content.includes(Buffer.from(PASS)), `${f} contains the passphrase`);
    }
    assert.match(tp.log('vault'), /vault initialised/);
  });
});
