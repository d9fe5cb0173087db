// What a sandbox node checks before it runs anything, given a SkillRecord from the
// registry, the publisher entry and the binary: approval status, approval bound to
// this exact binary, a trusted publisher, a valid signature over hash + manifest, an
// approval no wider than what was signed, and the module policy. Pure.
import { SkillStatus, type SkillRecord, type TrustedPublisher } from '@talon/proto';
import {
  approvalWithinRequest,
  canonicalJson,
  checkModulePolicy,
  DEFAULT_ENTRYPOINT,
  inspectModule,
  publisherKeyId,
  publisherTrusts,
  requestedPermissions,
  sha256Hex,
  SkillPackageError,
  skillId,
  statusName,
  validateManifest,
  verifySkillSignature,
  type SkillManifest,
} from '@talon/records/skills';
import { SkillRunError } from '../errors.ts';

// The record rules are the registry's (@talon/records/skills); this module adds what only
// a node that runs the skill checks: signature, manifest, approval scope, binary, module policy.
export { approvalWithinRequest, statusName };

export interface NodeCaps {
  /** Largest memory (MiB) this node grants a skill. */
  memoryCapMb: number;
  maxModuleBytes: number;
  /** Longest timeout this node grants a call. */
  maxTimeoutMs: number;
}

/** A record that passed every check that does not need the binary. */
export interface ApprovedSkill {
  id: string;
  record: SkillRecord;
  manifest: SkillManifest;
  entrypoint: string;
  inputSchema: string;
  memoryMb: number;
  timeoutMs: number;
  requiresUserApproval: boolean;
}

/** Checks a record for running; throws SkillRunError (not_approved, integrity_error, refused_module). */
export function checkApproved(record: SkillRecord, publisher: TrustedPublisher | undefined, caps: NodeCaps): ApprovedSkill {
  const id = skillId(record.name, record.version);
  if (record.status === SkillStatus.SKILL_STATUS_PENDING) {
    throw new SkillRunError('not_approved', `skill ${id} is installed but not approved; an operator runs \`talon skills approve ${id}\``);
  }
  if (record.status === SkillStatus.SKILL_STATUS_REVOKED) {
    throw new SkillRunError('not_approved', `skill ${id} was revoked${record.revokedReason ? ` (${record.revokedReason})` : ''}`);
  }
  if (record.status !== SkillStatus.SKILL_STATUS_APPROVED || !record.approved) {
    throw new SkillRunError('not_approved', `skill ${id} has no approval`);
  }
  if (record.approvedSha256 !== record.sha256) {
    throw new SkillRunError('not_approved', `skill ${id}'s binary changed after approval; it must be approved again`);
  }
  let keyId: string;
  try {
    keyId = publisherKeyId(record.publisherKey);
  } catch {
    throw new SkillRunError('integrity_error', `skill ${id} names no valid publisher key`);
  }
  if (!publisherTrusts(record, publisher)) {
    throw new SkillRunError('integrity_error', `skill ${id} is signed by publisher ${keyId}, which is no longer trusted`);
  }
  let manifest: SkillManifest;
  try {
    manifest = validateManifest(JSON.parse(record.manifestJson));
  } catch {
    throw new SkillRunError('integrity_error', `skill ${id}'s stored manifest is invalid`);
  }
  if (
    canonicalJson(manifest) !== record.manifestJson ||
    !verifySkillSignature(record.publisherKey, record.signature, record.sha256, record.manifestJson)
  ) {
    throw new SkillRunError('integrity_error', `skill ${id}'s signature does not match its manifest and binary hash`);
  }
  if (manifest.name !== record.name || manifest.version !== record.version) {
    throw new SkillRunError('integrity_error', `the record ${id} holds the signed manifest of ${skillId(manifest.name, manifest.version)}`);
  }
  const requested = requestedPermissions(manifest);
  if (!approvalWithinRequest(record.approved, requested)) {
    throw new SkillRunError('integrity_error', `skill ${id}'s approval grants more than its signed manifest requests`);
  }
  if (record.approved.memoryMb > caps.memoryCapMb) {
    throw new SkillRunError(
      'refused_module',
      `skill ${id} needs ${record.approved.memoryMb} MiB; this node allows ${caps.memoryCapMb} MiB`,
    );
  }
  return {
    id,
    record,
    manifest,
    entrypoint: manifest.entrypoint ?? DEFAULT_ENTRYPOINT,
    inputSchema: JSON.stringify(manifest.inputSchema),
    memoryMb: record.approved.memoryMb,
    timeoutMs: Math.min(record.approved.timeoutMs, caps.maxTimeoutMs),
    requiresUserApproval: record.approved.requiresUserApproval,
  };
}

/** Checks the binary against the approved hash and the module policy; returns the declared max pages. */
export function checkBinary(skill: ApprovedSkill, wasm: Uint8Array, caps: NodeCaps): { maxPages: number } {
  if (sha256Hex(wasm) !== skill.record.sha256) {
    throw new SkillRunError(
      'integrity_error',
      `the stored binary of skill ${skill.id} does not match its approved SHA-256 (${skill.record.sha256.slice(0, 12)}...); it was modified after approval and will not run`,
    );
  }
  try {
    const info = inspectModule(wasm);
    checkModulePolicy(info, {
      manifestMemoryMb: skill.memoryMb,
      memoryCapMb: caps.memoryCapMb,
      maxModuleBytes: caps.maxModuleBytes,
      entrypoint: skill.entrypoint,
    });
    return { maxPages: info.maxPages ?? 0 };
  } catch (err) {
    if (err instanceof SkillPackageError) throw new SkillRunError('refused_module', `skill ${skill.id} is refused: ${err.message}`);
    throw err;
  }
}
