// The sandbox's admin API for the CLI (`talon skills`) and tests: the skill package
// format (manifest, signature, module policy) and the registry's write side. Nothing
// here starts plugins or touches Extism.
export { SkillAdmin, RegistryError, type InstallResult, type InstallOutcome } from './registry/admin.ts';
export { statusName } from './registry/records.ts';
export { SkillPackageError, type RefusalReason } from './package/errors.ts';
export { describePermissions, parseSkillId, skillId, validateManifest, canonicalJson, type SkillManifest } from './package/manifest.ts';
export {
  readPackageDir,
  signPackageDir,
  verifyPackage,
  DEFAULT_INSTALL_LIMITS,
  PACKAGE_FILES,
  type PackageBytes,
} from './package/package.ts';
export { generatePublisherKey, publisherKeyId, normalizePublicKey } from './package/signing.ts';
export { ALLOWED_IMPORTS, inspectModule } from './package/inspect.ts';
