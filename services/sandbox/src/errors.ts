// The sandbox's invocation errors: a stable snake_case code (SkillError.code) and a
// message that tells the operator or the model what happened and what to do.

export type SkillErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'not_approved'
  | 'permission_denied'
  | 'integrity_error'
  | 'refused_module'
  | 'timeout'
  | 'memory_limit'
  | 'output_too_large'
  | 'trap'
  | 'plugin_error'
  | 'rate_limited'
  | 'busy'
  | 'unavailable'
  | 'internal';

export class SkillRunError extends Error {
  readonly code: SkillErrorCode;
  constructor(code: SkillErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SkillRunError';
    this.code = code;
  }
}
