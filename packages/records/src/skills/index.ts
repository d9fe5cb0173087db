// talon_skills and talon_skill_binaries: the skill package format (manifest,
// signature, module policy), the registry (write side for `talon skills`, read view
// for services) and the rules every reader applies to a record.
export { SkillAdmin, SkillRecords, RegistryError, type InstallResult, type InstallOutcome } from './registry.ts';
export {
  statusName,
  compareVersions,
  approvalWithinRequest,
  approvalStanding,
  skillStanding,
  publisherTrusts,
  recordPublisherKeyId,
  type SkillStanding,
} from './rules.ts';
export { SkillPackageError, type RefusalReason } from './package/errors.ts';
export {
  describePermissions,
  parseSkillId,
  skillId,
  validateManifest,
  canonicalJson,
  requestedPermissions,
  parseHostEntry,
  DEFAULT_ENTRYPOINT,
  MANIFEST_LIMITS,
  NAME_PATTERN,
  VERSION_PATTERN,
  type SkillManifest,
  type ManifestHost,
} from './package/manifest.ts';
export {
  readPackageDir,
  signPackageDir,
  verifyPackage,
  DEFAULT_INSTALL_LIMITS,
  PACKAGE_FILES,
  type PackageBytes,
  type VerifiedPackage,
} from './package/package.ts';
export {
  generatePublisherKey,
  publisherKeyId,
  tryPublisherKeyId,
  normalizePublicKey,
  sha256Hex,
  signSkill,
  verifySkillSignature,
  decodePublicKey,
  encodePublicKey,
  parseSignatureFile,
  type SignatureFile,
} from './package/signing.ts';
export * from './package/inspect.ts';
export { checkSchemaSupported, validateInput } from './package/schema.ts';
