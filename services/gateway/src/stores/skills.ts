// Installed skills and their permissions, read from talon_skills (written only by
// the admin identity through `talon skills`). Read-only here: approving a skill's
// permissions is an operator action on the command line.
import type { NatsConnection } from '@talon/kit/nats';
import type { SkillPermissions, SkillRecord } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { SkillRecords, skillId, statusName } from '@talon/records/skills';

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
  const status = statusName(r.status);
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
    approveCommand: status === 'approved' ? '' : `talon skills approve ${skillId(r.name, r.version)}`,
  };
}

export class SkillCatalog {
  private readonly r: SkillRecords;
  constructor(nc: NatsConnection) {
    this.r = new SkillRecords(nc);
  }
  async open(jsm?: JetStreamManager): Promise<void> {
    await this.r.open(jsm);
  }
  async list(): Promise<SkillView[]> {
    return (await this.r.records()).map((r) => skillView(r));
  }
}
