// What a talon_skills record means, in one place: its status name, whether its
// approval still stands (approved, bound to the current binary, signed by a
// publisher that is still trusted), and version order. The orchestrator (what to
// offer), egress (what to grant) and the sandbox (what to run) all decide with
// these; the sandbox adds the signature and module checks on top. Pure.
import { SkillStatus, type HostGrant, type SkillPermissions, type SkillRecord, type TrustedPublisher } from '@talon/proto';
import { tryPublisherKeyId } from './package/signing.ts';

export function statusName(s: SkillStatus): 'pending' | 'approved' | 'revoked' | 'unknown' {
  switch (s) {
    case SkillStatus.SKILL_STATUS_PENDING:
      return 'pending';
    case SkillStatus.SKILL_STATUS_APPROVED:
      return 'approved';
    case SkillStatus.SKILL_STATUS_REVOKED:
      return 'revoked';
    default:
      return 'unknown';
  }
}

/** Orders semantic versions (pre-releases before their release). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('-')[0]!.split('.').map(Number);
  const pb = b.split('-')[0]!.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) - (pb[i] ?? 0);
  const ra = a.includes('-');
  const rb = b.includes('-');
  if (ra !== rb) return ra ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

const grantKey = (h: HostGrant) => `${h.host}:${h.port}:${[...h.methods].sort().join(',')}`;

/** True when every grant in `approved` was requested by the signed manifest. */
export function approvalWithinRequest(approved: SkillPermissions, requested: SkillPermissions): boolean {
  const hosts = new Set(requested.hosts.map(grantKey));
  const secrets = new Set(requested.secrets);
  return (
    approved.hosts.every((h) => hosts.has(grantKey(h))) &&
    approved.secrets.every((s) => secrets.has(s)) &&
    approved.memoryMb <= requested.memoryMb &&
    approved.timeoutMs <= requested.timeoutMs &&
    (approved.requiresUserApproval || !requested.requiresUserApproval)
  );
}

/** The talon_skills key id of the publisher a record names, or undefined when it names no valid key. */
export function recordPublisherKeyId(r: Pick<SkillRecord, 'publisherKey'>): string | undefined {
  return tryPublisherKeyId(r.publisherKey);
}

/** The trusted-publisher entry vouches for this record: same key, same key id. */
export function publisherTrusts(r: Pick<SkillRecord, 'publisherKey'>, p: TrustedPublisher | undefined): boolean {
  const keyId = recordPublisherKeyId(r);
  return !!p && !!keyId && p.key === r.publisherKey && p.keyId === keyId;
}

export type SkillStanding = 'approved' | 'not_installed' | 'not_approved' | 'binary_changed' | 'publisher_untrusted';

/** The record's own part of its standing: installed, approved (with a grant), approved for the binary it holds. */
export function approvalStanding(r: SkillRecord | undefined): Exclude<SkillStanding, 'publisher_untrusted'> {
  if (!r) return 'not_installed';
  if (r.status !== SkillStatus.SKILL_STATUS_APPROVED || !r.approved) return 'not_approved';
  if (!r.approvedSha256 || r.approvedSha256 !== r.sha256) return 'binary_changed';
  return 'approved';
}

/** Whether a record's approval stands now: {@link approvalStanding}, and a publisher still trusted. */
export function skillStanding(r: SkillRecord | undefined, publisher: TrustedPublisher | undefined): SkillStanding {
  const s = approvalStanding(r);
  if (s !== 'approved') return s;
  return publisherTrusts(r!, publisher) ? 'approved' : 'publisher_untrusted';
}
