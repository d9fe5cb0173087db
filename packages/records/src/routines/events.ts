// Event triggers and heartbeats of routines: the one reading of `--on …` and of a
// heartbeat's answer, shared by the CLI (checks before writing), the gateway (the
// webhook route's subject) and every orchestrator replica (matching events). Pure.
import { SUBJECTS } from '@talon/kit/subjects';
import { ROUTINE_NAME, RoutineRuleError } from './names.ts';

/** Every routine event is published under this prefix (stream TALON_EVENTS). */
export const EVENT_PREFIX = 'talon.events.';
/** Sub-prefixes Talon itself publishes on: never an operator's `--on subject:`. */
const RESERVED = ['webhook', 'document'];
/** Longest event payload given to a turn (characters, after redaction); the rest is cut with a note. */
export const EVENT_PAYLOAD_MAX_CHARS = 8_000;
/** The whole answer of a heartbeat with nothing to report. */
export const HEARTBEAT_OK = 'HEARTBEAT_OK';

export type Trigger =
  { kind: 'cron' } | { kind: 'webhook'; name: string } | { kind: 'subject'; subject: string } | { kind: 'document'; prefix: string };

export const TRIGGER_RULE = 'webhook:<name>, subject:talon.events.<…> or document[:<key prefix>]';
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
// As memory's document keys: letters, digits and :@._+-.
const KEY_PREFIX = /^[A-Za-z0-9:@._+-]{0,128}$/;

/** The subject the gateway publishes a routine webhook's events on (and the routine listens to). */
export function webhookEventSubject(name: string): string {
  return `${SUBJECTS.events('webhook')}.${name}`;
}

/** A `--on` value (or a record's `trigger`; empty: cron); throws RoutineRuleError naming the problem. */
export function parseTrigger(on: string): Trigger {
  if (on === '') return { kind: 'cron' };
  const i = on.indexOf(':');
  const kind = i < 0 ? on : on.slice(0, i);
  const arg = i < 0 ? '' : on.slice(i + 1);
  if (kind === 'webhook') {
    if (!ROUTINE_NAME.test(arg))
      throw new RoutineRuleError(`--on webhook:<name> needs 1-48 characters of a-z, 0-9, _ and -; got ${JSON.stringify(arg.slice(0, 60))}`);
    return { kind, name: arg };
  }
  if (kind === 'subject') return { kind, subject: checkEventSubject(arg) };
  if (kind === 'document') {
    if (!KEY_PREFIX.test(arg))
      throw new RoutineRuleError(
        `--on document:<prefix> needs at most 128 characters of letters, digits and :@._+- (as memory document keys); got ${JSON.stringify(arg.slice(0, 60))}`,
      );
    return { kind, prefix: arg };
  }
  throw new RoutineRuleError(`--on must be ${TRIGGER_RULE}; got ${JSON.stringify(on.slice(0, 60))}`);
}

/** An operator's event subject: under talon.events., not a reserved part, NATS tokens (with * and a final >). */
export function checkEventSubject(subject: string): string {
  if (!subject.startsWith(EVENT_PREFIX))
    throw new RoutineRuleError(
      `--on subject:${subject.slice(0, 80)} is outside ${EVENT_PREFIX}>: routines listen only to subjects under ${EVENT_PREFIX} ` +
        `(NATS lets services publish there and the orchestrators read it, nothing else); publish your events on e.g. ${EVENT_PREFIX}deploys`,
    );
  const tokens = subject.slice(EVENT_PREFIX.length).split('.');
  const ok = tokens.every((t, i) => TOKEN.test(t) || t === '*' || (t === '>' && i === tokens.length - 1));
  if (!ok || subject.length > 200)
    throw new RoutineRuleError(
      `--on subject:${subject.slice(0, 80)} is not a valid subject: dot-separated tokens of letters, digits, _ and - (or * and a final >)`,
    );
  const first = tokens[0]!;
  if (RESERVED.includes(first) || first === '>' || first === '*')
    throw new RoutineRuleError(
      `--on subject:${subject.slice(0, 80)} names Talon's own events (${RESERVED.map((r) => EVENT_PREFIX + r).join(', ')}): use --on webhook:<name> or --on document instead`,
    );
  return subject;
}

/** The `trigger` string a record stores for a parsed trigger. */
export function triggerString(t: Trigger): string {
  switch (t.kind) {
    case 'cron':
      return '';
    case 'webhook':
      return `webhook:${t.name}`;
    case 'subject':
      return `subject:${t.subject}`;
    case 'document':
      return t.prefix === '' ? 'document' : `document:${t.prefix}`;
  }
}

/** Whether a NATS subject matches a pattern with * and > wildcards. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** One event as the orchestrators read it from TALON_EVENTS. */
export interface RoutineEvent {
  subject: string;
  /** The stream sequence: unique, so it keys the run and the turn. */
  seq: number;
  /** A memory document event's user and key (from the orchestrator that stored it). */
  document?: { userId: string; key: string };
}

/** Whether an event fires a routine with trigger `t` running as `userId`. */
export function eventFires(t: Trigger, userId: string, e: RoutineEvent): boolean {
  switch (t.kind) {
    case 'cron':
      return false;
    case 'webhook':
      return e.subject === webhookEventSubject(t.name);
    case 'subject':
      return subjectMatches(t.subject, e.subject);
    case 'document':
      return e.subject === SUBJECTS.events('document') && e.document?.userId === userId && e.document.key.startsWith(t.prefix);
  }
}

/** The payload text a turn is given: at most `max` characters, the cut said. */
export function capPayload(text: string, max: number = EVENT_PAYLOAD_MAX_CHARS): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}\n[… ${text.length - max} more characters cut]`;
}

/** A heartbeat's decision: deliver its answer, or stay quiet (the answer is the sentinel). */
export function heartbeatDecision(answer: string): 'quiet' | 'deliver' {
  const a = answer.trim().replace(/^[`*"']+|[`*"'.]+$/g, '');
  return a === HEARTBEAT_OK ? 'quiet' : 'deliver';
}

/** The user message of a heartbeat run: the operator's prompt, then how to answer. */
export function heartbeatInstructions(prompt: string, checklistKey: string): string {
  return (
    `${prompt}\n\nThis is a heartbeat check. Go through the checklist (memory document ${JSON.stringify(checklistKey)}, ` +
    `given below when found). If nothing needs the user's attention, answer exactly ${HEARTBEAT_OK} and nothing else. ` +
    `Otherwise answer with a short message saying what needs attention.`
  );
}
