// `talon audit verify` on the running platform: chat turns (egress decisions on
// TALON_AUDIT) and vault admin operations (rows in vault.audit_log) verify intact;
// then one egress decision is deleted from the stream and one vault row is edited in
// the database, and the real CLI exits 1 naming each break.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { REPO_ROOT } from '@talon/cli/platform';
import { STREAMS, SUBJECTS } from '@talon/kit/subjects';
import { EgressDecision } from '@talon/proto';
import { startTestPlatform, type TestPlatform } from '@talon/testkit';

describe('talon audit verify (tamper-evident audit)', () => {
  let tp: TestPlatform;
  let nc: NatsConnection;
  let db: pg.Client;

  const talon = (args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    new Promise((res, rej) => {
      const env: Record<string, string | undefined> = {
        ...process.env,
        TALON_HOME: tp.home,
        VAULT_GRPC_PORT: String(tp.ports.grpc.vault),
        TALON_NATS_URL: tp.platform.natsUrl,
      };
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
      child.on('close', (code) => res({ code, stdout, stderr }));
      child.stdin.end(input);
    });

  /** Stream sequences of the egress decisions stored now, with their chain link. */
  const decisions = async () => {
    const consumer = await jetstream(nc).consumers.get(STREAMS.audit.name, { filter_subjects: SUBJECTS.auditEgress('decision') });
    const out: Array<{ seq: number; chain: string; pos: number }> = [];
    const info = await (await jetstreamManager(nc)).streams.info(STREAMS.audit.name, { subjects_filter: SUBJECTS.auditEgress('decision') });
    const total = info.state.subjects?.[SUBJECTS.auditEgress('decision')] ?? 0;
    if (total === 0) return out;
    const it = await consumer.consume({ max_messages: 100 });
    for await (const m of it) {
      const d = EgressDecision.decode(m.data);
      out.push({ seq: m.seq, chain: d.link?.chain ?? '', pos: d.link?.seq ?? 0 });
      if (m.info.pending === 0) break;
    }
    await it.close();
    return out;
  };

  before(async () => {
    tp = await startTestPlatform({ env: { TALON_VAULT_PASSPHRASE: 'audit verify passphrase 0123' } });
    nc = await tp.admin();
    db = new pg.Client({ connectionString: tp.platform.adminDatabaseUrl() });
    await db.connect();
  });
  after(async () => {
    await db?.end().catch(() => undefined);
    await nc?.close().catch(() => undefined);
    await tp?.stop();
  });

  it('verifies intact after chat turns and vault admin operations', async () => {
    const token = await tp.token('alice');
    for (const text of ['first', 'second', 'third', 'fourth']) {
      const res = await tp.chat(token, { model: 'fake-model', messages: [{ role: 'user', content: `audit ${text}` }] });
      assert.equal(res.status, 200, res.text);
    }
    const rotate = await talon(['vault', 'rotate-key']);
    assert.equal(rotate.code, 0, rotate.stderr);
    // Egress publishes its decisions asynchronously: wait until all four turns' calls are stored.
    await tp.until('egress decisions on TALON_AUDIT', async () => (await decisions()).length >= 4 || undefined);

    const r = await talon(['audit', 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^vault audit: \d+ records?, chain intact, from the first record ever written$/m);
    assert.match(r.stdout, /^egress audit: \d+ records?, chain intact, from the first record ever written$/m);
    const vaultCount = Number(/vault audit: (\d+)/.exec(r.stdout)![1]);
    assert.ok(vaultCount >= 2, r.stdout);
  });

  it('exits 1 naming the gap when an egress decision is deleted from the stream', async () => {
    const all = await decisions();
    const chain = all[0]!.chain;
    assert.ok(chain, 'decisions carry a chain link');
    const mine = all.filter((d) => d.chain === chain);
    assert.ok(mine.length >= 3, `need three decisions in one chain, have ${mine.length}`);
    const victim = mine[1]!;
    const jsm = await jetstreamManager(nc);
    assert.equal(await jsm.streams.deleteMessage(STREAMS.audit.name, victim.seq), true);

    const r = await talon(['audit', 'verify', '--egress']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `^egress audit: chain broken at record stream seq ${mine[2]!.seq} in chain ${chain} \\(at \\d{4}-\\d\\d-\\d\\dT[^)]+\\): positions ${victim.pos}\\.\\.${victim.pos} are missing after stream seq ${mine[0]!.seq}: 1 record removed$`,
        'm',
      ),
    );
    assert.doesNotMatch(r.stdout, /vault audit/, '--egress checks only egress');
  });

  it('exits 1 naming the record when a vault row is edited in the database', async () => {
    const ok = await talon(['audit', 'verify', '--vault']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const { rows } = await db.query<{ id: string }>(`select id from vault.audit_log where hash <> '' order by id limit 1`);
    const id = rows[0]!.id;
    await db.query(`update vault.audit_log set reason = 'x' where id = $1`, [id]);

    const r = await talon(['audit', 'verify', '--vault']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`^vault audit: chain broken at record #${id} \\(at \\d{4}-[^)]+\\): its content does not match its stored hash`, 'm'),
    );
  });
});
