// Vault benchmark: Resolve latency over mTLS as egress (every call audited before
// release), Status for comparison, concurrent Resolve throughput (audit group
// commit), and unseal time with the Argon2id parameters in use.
//   node_modules/.bin/node bench/vault.ts [--database embedded|native|both] [--n 2000]
import { loadavg } from 'node:os';
import { benchArgs } from './args.ts';
import { createClient, unary } from '@talon/kit/grpc';
import { createLogger } from '@talon/kit/log';
import { createPool } from '@talon/kit/db';
import { Placement, VaultAdminServiceClient, VaultServiceClient } from '@talon/proto';
import { startTestPlatform, type TestDatabaseKind } from '@talon/testkit';
import { AuditWriter } from '../services/vault/src/audit.ts';
import { KDF_MINIMUM } from '../services/vault/src/crypto.ts';
import { VaultStore } from '../services/vault/src/store.ts';
import { Vault } from '../services/vault/src/vault.ts';
import { fmt, machine, summarize, table } from './lib.ts';

const { values } = benchArgs({ options: { database: { type: 'string', default: 'both' }, n: { type: 'string', default: '2000' } } });
const N = Number(values.n);
const kinds: TestDatabaseKind[] = values.database === 'both' ? ['embedded', 'native'] : [values.database as TestDatabaseKind];
const PASS = 'benchmark vault passphrase';

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await fn();
  return [performance.now() - t0, r];
}

async function run(database: TestDatabaseKind) {
  // The production key-derivation cost (the test harness lowers it for speed).
  const tp = await startTestPlatform({
    services: ['vault'],
    llm: false,
    database,
    env: { TALON_LOG_LEVEL: 'warn', VAULT_KDF_MEMORY_KIB: '131072', VAULT_KDF_PASSES: '3', VAULT_KDF_PARALLELISM: '1' },
  });
  try {
    const addr = `127.0.0.1:${tp.ports.grpc.vault}`;
    const admin = createClient(VaultAdminServiceClient, addr, tp.platform.tls('admin'), 'vault');
    const egress = createClient(VaultServiceClient, addr, tp.platform.tls('egress'), 'vault');
    const unsealMs: number[] = [];
    const [initMs, init] = await timed(() => unary(admin, admin.unseal, { passphrase: PASS }, { timeoutMs: 60_000 }));
    for (let i = 0; i < 3; i++) {
      await unary(admin, admin.seal, {});
      unsealMs.push((await timed(() => unary(admin, admin.unseal, { passphrase: PASS }, { timeoutMs: 60_000 })))[0]);
    }
    await unary(admin, admin.setSecret, {
      name: 'bench_key',
      value: Buffer.from('sk-bench-0123456789abcdef0123456789'),
      policy: {
        hosts: ['api.example.com'],
        placement: Placement.PLACEMENT_BEARER,
        field: '',
        principals: ['orchestrator'],
        expiresAtMs: 0,
      },
    });
    const req = {
      name: 'bench_key',
      principal: 'orchestrator',
      host: 'api.example.com',
      port: 443,
      placement: Placement.PLACEMENT_BEARER,
      field: '',
      requestId: 'bench',
    };
    for (let i = 0; i < 200; i++) await unary(egress, egress.resolve, req); // warm-up
    const resolveMs: number[] = [];
    for (let i = 0; i < N; i++) resolveMs.push((await timed(() => unary(egress, egress.resolve, req)))[0]);
    const statusMs: number[] = [];
    for (let i = 0; i < Math.min(N, 1000); i++) statusMs.push((await timed(() => unary(egress, egress.status, {})))[0]);
    // The same Resolve in-process (a second vault replica on the same database): the vault's own
    // cost (row check, decrypt, audit insert) without gRPC and mTLS.
    const pool = createPool(tp.platform.adminDatabaseUrl(), { max: 4, applicationName: 'bench-vault' });
    const replica = new Vault({
      store: new VaultStore(pool),
      audit: new AuditWriter(pool),
      log: createLogger({ service: 'bench', level: 'silent' }),
      kdf: KDF_MINIMUM,
      rotateAfter: 2 ** 24,
    });
    await replica.unseal(Buffer.from(PASS), 'bench');
    const inProcMs: number[] = [];
    for (let i = 0; i < 200; i++) (await replica.resolve(req, 'egress')).value.fill(0);
    for (let i = 0; i < N; i++) inProcMs.push((await timed(async () => (await replica.resolve(req, 'egress')).value.fill(0)))[0]);
    await replica.seal('bench');
    await pool.end();
    // 16 callers in flight: audit rows are committed in groups, each release still waits for its own row.
    const [concMs] = await timed(async () => {
      let left = N;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (left-- > 0) await unary(egress, egress.resolve, req);
        }),
      );
    });
    admin.close();
    egress.close();
    return {
      database,
      init,
      initMs,
      unsealMs,
      resolve: summarize(resolveMs),
      status: summarize(statusMs),
      inProc: summarize(inProcMs),
      concurrentPerSec: (N / concMs) * 1000,
    };
  } finally {
    await tp.stop();
  }
}

const results = [];
for (const k of kinds) {
  try {
    results.push(await run(k));
  } catch (err) {
    console.error(`${k}: skipped (${(err as Error).message.split('\n')[0]})`);
  }
}
console.log(
  `\nVault benchmark — ${machine()}, load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log(`N=${N} sequential calls over mTLS as spiffe://talon/egress; "in-process" = the vault's own work, no gRPC\n`);
console.log(
  table(
    ['database', 'call', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'max ms'],
    results.flatMap((r) => [
      [
        r.database,
        'Resolve (audited)',
        fmt(r.resolve.p50),
        fmt(r.resolve.p90),
        fmt(r.resolve.p99),
        fmt(r.resolve.mean),
        fmt(r.resolve.max),
      ],
      [r.database, 'Status', fmt(r.status.p50), fmt(r.status.p90), fmt(r.status.p99), fmt(r.status.mean), fmt(r.status.max)],
      [r.database, 'Resolve in-process', fmt(r.inProc.p50), fmt(r.inProc.p90), fmt(r.inProc.p99), fmt(r.inProc.mean), fmt(r.inProc.max)],
    ]),
  ),
);
console.log('');
console.log(
  table(
    ['database', 'KDF', 'first unseal (creates keyring) ms', 'unseal ms (3 runs)', 'Resolve/s, 16 in flight'],
    results.map((r) => [
      r.database,
      r.init.kdf,
      fmt(r.initMs, 0),
      r.unsealMs.map((m) => fmt(m, 0)).join(' / '),
      fmt(r.concurrentPerSec, 0),
    ]),
  ),
);
