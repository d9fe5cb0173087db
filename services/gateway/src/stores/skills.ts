// Installed skills and their permissions, read from talon_skills (written only by
// the admin identity through `talon skills`). Read-only here: approving a skill's
// permissions is an operator action on the command line.
import { KV_BUCKETS, type NatsConnection } from '@talon/kit';
import { SkillRecord, SkillStatus, type SkillPermissions } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { openBucket, readAll, type Bucket } from './kv.ts';

export interface SkillView {
  name: string;
  version: string;
  status: 'pending' | 'approved' | 'revoked' | 'unknown';
  description: string;
  sha256: string;
  publisherKey: string;
  requested: PermissionView | null;
  approved: PermissionView | null;
  installedAtMs: number;
  approvedAtMs: number;
  approvedBy: string;
  revokedAtMs: number;
  revokedReason: string;
  /** What the operator runs to approve it (pending skills). */
  approveCommand: string;
}

export interface PermissionView {
  hosts: Array<{ host: string; port: number; methods: string[] }>;
  secrets: string[];
  memoryMb: number;
  timeoutMs: number;
  requiresUserApproval: boolean;
}

function perms(p: SkillPermissions | undefined): PermissionView | null {
  if (!p) return null;
  return {
    hosts: p.hosts.map((h) => ({ host: h.host, port: h.port, methods: [...h.methods] })),
    secrets: [...p.secrets],
    memoryMb: p.memoryMb,
    timeoutMs: p.timeoutMs,
    requiresUserApproval: p.requiresUserApproval,
  };
}

export function skillView(r: SkillRecord): SkillView {
  const status =
    r.status === SkillStatus.SKILL_STATUS_PENDING
      ? 'pending'
      : r.status === SkillStatus.SKILL_STATUS_APPROVED
        ? 'approved'
        : r.status === SkillStatus.SKILL_STATUS_REVOKED
          ? 'revoked'
          : 'unknown';
  return {
    name: r.name,
    version: r.version,
    status,
    description: r.description,
    sha256: r.sha256,
    publisherKey: r.publisherKey,
    requested: perms(r.requested),
    approved: status === 'approved' ? perms(r.approved) : null,
    installedAtMs: r.installedAtMs,
    approvedAtMs: r.approvedAtMs,
    approvedBy: r.approvedBy,
    revokedAtMs: r.revokedAtMs,
    revokedReason: r.revokedReason,
    approveCommand: status === 'approved' ? '' : `talon skills approve ${r.name}@${r.version}`,
  };
}

export class SkillCatalog {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }
  async open(jsm?: JetStreamManager): Promise<void> {
    this.b = await openBucket(this.nc, KV_BUCKETS.skills, jsm);
  }
  async list(): Promise<SkillView[]> {
    return (await readAll(this.b, 'skill.', (v) => SkillRecord.decode(v))).map((r) => skillView(r.value));
  }
}
