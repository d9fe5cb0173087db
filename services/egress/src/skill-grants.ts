// What a skill may do through egress: exactly the hosts and secret names the
// operator approved for that skill version (KV bucket talon_skills, written by
// `talon skills approve`). A second fence behind the sandbox, which verifies
// signatures and binaries before it runs anything: egress honours a grant only
// while the record is approved for the binary it was approved for and its
// publisher is still trusted. Changes to the bucket drop cached grants at once.
import { KV_BUCKETS } from '@talon/kit/subjects';
import { parseSkillPrincipal } from '@talon/kit/contracts';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import type { SkillPermissions, SkillRecord } from '@talon/proto';
import { approvalStanding, publisherTrusts, SkillRecords, tryPublisherKeyId } from '@talon/records/skills';
import { GrantCache, type Grant } from './grant-cache.ts';
import { normalizeHost } from './policy.ts';

export type SkillGrant = Grant;

// Principals, key ids and a record's standing are shared rules (packages/kit/src/contracts.ts,
// @talon/records/skills): egress re-checks with the registry's own code.
export { tryPublisherKeyId as publisherKeyId };

/** The grant a record carries, or the reason it carries none. Pure. */
export function grantOf(principal: string, rec: SkillRecord | undefined, publisherTrusted: boolean): SkillGrant | { refused: string } {
  const standing = approvalStanding(rec);
  if (standing !== 'approved') return { refused: `skill_${standing}` };
  if (!publisherTrusted) return { refused: 'skill_publisher_untrusted' };
  const approved: SkillPermissions | undefined = rec!.approved;
  return {
    rules: (approved?.hosts ?? []).map((h) => ({
      principal,
      host: normalizeHost(h.host),
      ...(h.port ? { port: h.port } : {}),
      ...(h.methods.length > 0 ? { methods: h.methods.map((m) => m.toUpperCase()) } : {}),
    })),
    secrets: new Set(approved?.secrets ?? []),
  };
}

export class SkillGrants {
  private readonly nc: NatsConnection;
  private records: SkillRecords | undefined;
  private readonly cache: GrantCache;

  constructor(nc: NatsConnection, log: Logger, ttlMs = 30_000) {
    this.nc = nc;
    this.cache = new GrantCache(nc, log, {
      bucket: KV_BUCKETS.skills,
      registry: { name: 'skill registry', unavailable: 'skill_registry_unavailable' },
      ttlMs,
    });
  }

  async start(): Promise<void> {
    this.records = await new SkillRecords(this.nc).open();
    this.cache.start();
  }

  /** The grant for a `skill:name@version` principal. */
  async grantFor(principal: string): Promise<SkillGrant | { refused: string }> {
    const ref = parseSkillPrincipal(principal);
    if (!ref) return { refused: 'bad_skill_principal' };
    const records = this.records;
    if (!records) return { refused: 'skill_registry_unavailable' };
    return this.cache.get(principal, async () => {
      const rec = await records.record(ref.name, ref.version);
      const trusted = !!rec && publisherTrusts(rec, await records.publisherOf(rec));
      return grantOf(principal, rec, trusted);
    });
  }

  stop(): void {
    this.cache.stop();
  }
}
