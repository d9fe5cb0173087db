// `talon audit verify`: checks the hash chains of the vault's audit table (read
// through the vault's admin API) and of the egress decisions on TALON_AUDIT (read
// from the stream as the NATS admin), and names the first break. The hash and the
// checks are packages/kit/src/audit-chain.ts, the same code the writers use.
import type { Command } from 'commander';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { EgressTrailVerifier, verifyVaultTrail, type TrailReport } from '@talon/kit/audit-chain';
import { STREAMS, SUBJECTS } from '@talon/kit/subjects';
import { CliError, withAdminNats } from '../context.ts';
import { vaultAdmin } from './vault.ts';

const PAGE = 1000;

const when = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : 'unknown time');

/** One line for a trail: intact (with how its oldest record is anchored) or where it breaks. */
export function describeTrail(name: string, r: TrailReport): string {
  if (r.break) {
    const chain = r.break.chain ? ` in chain ${r.break.chain}` : '';
    return `${name}: chain broken at record ${r.break.label}${chain} (at ${when(r.break.atMs)}): ${r.break.detail}`;
  }
  const older = r.unchained > 0 ? `; ${r.unchained} older record${r.unchained === 1 ? '' : 's'} predate the chain (not checked)` : '';
  const chains = [...r.chains.values()];
  const anchors = chains.map((c) => c.anchoredOn);
  const anchor =
    r.records === 0
      ? ''
      : anchors.every((a) => a === 'genesis')
        ? ', from the first record ever written'
        : anchors.includes('anchor')
          ? ', from the oldest record kept (linked to the newest one retention deleted)'
          : ', from the oldest record kept (older ones were deleted by retention; it is trusted as the start)';
  const many = chains.length > 1 ? ` in ${chains.length} chains` : '';
  return `${name}: ${r.records} record${r.records === 1 ? '' : 's'}${many}, chain intact${anchor}${older}`;
}

async function verifyVault(): Promise<TrailReport> {
  return verifyVaultTrail((afterId) => vaultAdmin((c) => c.auditChain, { afterId, limit: PAGE }, 30_000));
}

async function verifyEgress(): Promise<TrailReport> {
  return withAdminNats(async (nc) => {
    const subject = SUBJECTS.auditEgress('decision');
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(STREAMS.audit.name, { subjects_filter: subject }).catch((err: unknown) => {
      throw new CliError(`cannot read the ${STREAMS.audit.name} stream: ${(err as Error).message}. Is Talon running?`, 69);
    });
    const v = new EgressTrailVerifier();
    // Stored messages up to the last one now; decisions arriving meanwhile are left for the next run.
    let remaining = info.state.subjects?.[subject] ?? 0;
    const last = info.state.last_seq;
    if (remaining === 0) return v.finish();
    const consumer = await jetstream(nc).consumers.get(STREAMS.audit.name, { filter_subjects: subject });
    const messages = await consumer.consume({ max_messages: 256 });
    try {
      for await (const m of messages) {
        if (m.seq > last) break;
        if (v.add(m.seq, m.data)) break;
        remaining -= 1;
        if (remaining <= 0 || m.seq === last || m.info.pending === 0) break;
      }
    } finally {
      await messages.close();
    }
    return v.finish();
  });
}

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('the audit trails: check that nobody changed them');
  audit
    .command('verify')
    .description(
      'check the hash chains of the vault audit table and of the egress decisions on TALON_AUDIT; ' +
        'prints "N records, chain intact" per trail, or the first record where a chain breaks (edited, removed, inserted or reordered) and exits 1',
    )
    .option('--vault', 'only the vault audit (through the vault admin API; TALON_VAULT_ADDR or the local vault)')
    .option('--egress', 'only the egress decisions (from NATS as the admin; TALON_NATS_URL or the local NATS)')
    .addHelpText(
      'after',
      `
Each record carries the hash of the one before it (SHA-256; docs/architecture.md,
"Tamper-evident audit"). The vault is one chain; egress has one chain per process.
Retention deletes the oldest records: the check starts at the oldest record kept,
anchored on what the vault recorded at deletion (egress: on the record's stored link).

Exit status: 0 every chain checked is intact; 1 a chain is broken (the line says where). A check
that cannot run (Talon not reachable) fails with a message saying what to do.`,
    )
    .action(async (o: { vault?: boolean; egress?: boolean }) => {
      const both = !o.vault && !o.egress;
      let broken = false;
      if (both || o.vault) {
        const r = await verifyVault();
        console.log(describeTrail('vault audit', r));
        broken ||= r.break !== undefined;
      }
      if (both || o.egress) {
        const r = await verifyEgress();
        console.log(describeTrail('egress audit', r));
        broken ||= r.break !== undefined;
      }
      if (broken) process.exitCode = 1;
    });
}
