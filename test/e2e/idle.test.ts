// A quiet idle (docs/architecture.md, "Vault and egress"): a settled platform with nothing to
// do exports no span, writes no log line in any log and adds no vault audit row — unsealed,
// and sealed after egress reported the seal once — while health is checked over gRPC and
// /readyz all along. And a secret stored through the vault admin API reaches egress's scan
// index by push (VaultService.Watch), promptly.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { checkHealth, createClient, unary } from '@talon/kit/grpc';
import { SERVICES } from '@talon/kit/service';
import { Placement, VaultAdminServiceClient } from '@talon/proto';
import { startFakeCollector, startTestPlatform, waitFor, type FakeCollector, type TestPlatform } from '@talon/testkit';

const PASSPHRASE = `idle-${randomBytes(8).toString('hex')}`;
/** The batch span processor's delay: spans reach the collector this long after they end. */
const FLUSH_MS = 100;
const WINDOW_MS = 30_000;

describe('a quiet idle', () => {
  let tp: TestPlatform;
  let collector: FakeCollector;
  let db: pg.Client;
  let vault: InstanceType<typeof VaultAdminServiceClient>;

  const logDir = () => dirname(tp.platform.logFile('vault'));
  /** Lines in every log file (services, nats-server, the embedded database). */
  const logLines = (): Record<string, number> =>
    Object.fromEntries(
      readdirSync(logDir())
        .filter((f) => f.endsWith('.log'))
        .map((f) => [f, readFileSync(join(logDir(), f), 'utf8').split('\n').filter(Boolean).length]),
    );
  const auditRows = async () => Number((await db.query<{ n: string }>('select count(*) as n from vault.audit_log')).rows[0]!.n);
  const snapshot = async () => ({ spans: collector.spans.length, logs: logLines(), audit: await auditRows() });
  const newLines = (before: Record<string, number>, now: Record<string, number>) =>
    Object.fromEntries(Object.entries(now).flatMap(([f, n]) => (n !== (before[f] ?? 0) ? [[f, n - (before[f] ?? 0)]] : [])));

  /**
   * Settled: nothing new (spans, log lines, audit rows) for a few flush intervals in a row.
   * A signal, not a sleep: it returns as soon as the platform stopped moving.
   */
  const settled = async () => {
    let last = JSON.stringify(await snapshot());
    let stableSince = Date.now();
    await waitFor(
      async () => {
        const now = JSON.stringify(await snapshot());
        if (now !== last) {
          last = now;
          stableSince = Date.now();
        }
        return Date.now() - stableSince >= 20 * FLUSH_MS;
      },
      60_000,
      'the platform to settle (no new span, log line or audit row)',
    );
  };

  /** Health checks during the window: every service's grpc.health.v1 and /readyz, repeatedly. */
  const probeAll = async () => {
    for (const s of SERVICES) {
      assert.equal(await checkHealth(`127.0.0.1:${tp.ports.grpc[s]}`, tp.platform.tls('admin'), s, { timeoutMs: 5000 }), 'SERVING', s);
      const res = await fetch(`${tp.platform.internalUrl(s)}/readyz`, { signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 200, `${s} /readyz`);
      await res.arrayBuffer();
    }
  };

  /**
   * The observation window is a fixed 30 s on purpose: this measures the absence of activity,
   * which no signal can announce. Health is probed throughout it.
   */
  const observeIdle = async () => {
    const before = await snapshot();
    const end = Date.now() + WINDOW_MS;
    let probes = 0;
    while (Date.now() < end) {
      await probeAll();
      probes += 1;
      await new Promise((r) => setTimeout(r, 2000));
    }
    // Anything that happened in the window has been flushed by now.
    await new Promise((r) => setTimeout(r, 10 * FLUSH_MS));
    const now = await snapshot();
    assert.ok(probes >= 5, `health probed ${probes} times`);
    return {
      spans: collector.spans.slice(before.spans).map((s) => `${s.service}:${s.name}`),
      logs: newLines(before.logs, now.logs),
      audit: now.audit - before.audit,
    };
  };

  before(async () => {
    collector = await startFakeCollector();
    tp = await startTestPlatform({
      llm: false,
      env: {
        TALON_VAULT_PASSPHRASE: PASSPHRASE,
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_BSP_SCHEDULE_DELAY: String(FLUSH_MS),
      },
    });
    db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
    vault = createClient(VaultAdminServiceClient, `127.0.0.1:${tp.ports.grpc.vault}`, tp.platform.tls('admin'), 'vault');
    await tp.egressCaughtUpWithVault();
    await settled();
  });
  after(async () => {
    vault?.close();
    await db?.end().catch(() => undefined);
    await tp?.stop();
    await collector?.close();
  });

  it('unsealed and idle for 30 s, health probed throughout: no span, no log line, no audit row', async () => {
    const seen = await observeIdle();
    assert.deepEqual(seen.spans, [], 'spans while idle');
    assert.deepEqual(seen.logs, {}, 'log lines while idle');
    assert.equal(seen.audit, 0, 'vault audit rows while idle');
  });

  it('a secret stored through the vault admin API reaches egress by push, promptly', async () => {
    const before = await snapshot();
    const t0 = Date.now();
    await unary(vault, vault.setSecret, {
      name: 'idle_push',
      value: Buffer.from(`push-${randomBytes(12).toString('hex')}`),
      policy: {
        hosts: ['api.example.com'],
        placement: Placement.PLACEMENT_BEARER,
        field: '',
        principals: ['orchestrator'],
        expiresAtMs: 0,
      },
    });
    // The egress log line the harness waits on carries the epoch the secret moved the vault to.
    await tp.egressCaughtUpWithVault(5000);
    const ms = Date.now() - t0;
    assert.ok(ms < 5000, `egress loaded the new index ${ms} ms after the change`);
    const last = tp
      .log('egress')
      .split('\n')
      .filter((l) => l.includes('"scan index refreshed from vault"'))
      .at(-1);
    assert.match(last ?? '', /"secrets":1\b/);
    // The counters the idle windows read do see activity (so their zeros are not vacuous).
    await waitFor(() => collector.spans.slice(before.spans).some((s) => s.name.endsWith('/scanIndex')), 10_000, 'the ScanIndex span');
    assert.ok((await auditRows()) > before.audit, 'the change and the index load are audited');
    await settled();
  });

  it('sealed: egress reports it once; then 30 s without a span, log line or audit row', async () => {
    const sealedLines = () =>
      tp
        .log('egress')
        .split('\n')
        .filter((l) => l.includes('"vault sealed'));
    assert.equal(sealedLines().length, 0);
    await unary(vault, vault.seal, {});
    await waitFor(() => sealedLines().length === 1, 10_000, 'egress to report the seal');
    await settled();
    const seen = await observeIdle();
    assert.deepEqual(seen.spans, [], 'spans while sealed');
    assert.deepEqual(seen.logs, {}, 'log lines while sealed');
    assert.equal(seen.audit, 0, 'vault audit rows while sealed');
    assert.equal(sealedLines().length, 1, 'the seal is reported once');
  });
});
