// A routine's name and the error of every routine rule (shared by rules.ts and events.ts).
export const ROUTINE_NAME = /^[a-z0-9][a-z0-9_-]{0,47}$/;
export const ROUTINE_NAME_RULE = '1-48 characters of a-z, 0-9, _ and -, starting with a letter or digit';

export class RoutineRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RoutineRuleError';
  }
}
