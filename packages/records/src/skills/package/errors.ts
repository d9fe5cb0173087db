// Why a skill package is refused: one class, a stable reason and a message that
// tells the operator (or publisher) what to do next.

export type RefusalReason =
  | 'manifest_invalid'
  | 'schema_unsupported'
  | 'signature_missing'
  | 'signature_invalid'
  | 'publisher_untrusted'
  | 'module_invalid'
  | 'import_not_allowed'
  | 'wasi_import'
  | 'memory_unbounded'
  | 'memory_too_large'
  | 'table_unbounded'
  | 'module_too_large'
  | 'entrypoint_missing'
  | 'hash_mismatch';

export class SkillPackageError extends Error {
  readonly reason: RefusalReason;
  constructor(reason: RefusalReason, message: string) {
    super(message);
    this.name = 'SkillPackageError';
    this.reason = reason;
  }
}
