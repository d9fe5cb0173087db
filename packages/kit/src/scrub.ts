// Credential shapes removed from free text: the one list, used by logs (./log.ts), errors
// and span attributes. A module of its own, free of the logger, so a process that only
// needs to scrub a message (the supervisor, a failing service's last words) loads no more.
export const REDACTED = '[REDACTED]';

const SCRUBBERS: ReadonlyArray<[RegExp, string]> = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}/gi, `$1 ${REDACTED}`],
  [/\btalon_(pat|tok)_[A-Za-z0-9]{16,}/g, REDACTED],
  [/\bS[UAONCPX][A-Z2-7]{50,}\b/g, REDACTED],
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g, REDACTED],
  [/([?&](?:key|api_key|apikey|token|access_token|secret|password|sig|signature)=)[^&\s"']+/gi, `$1${REDACTED}`],
];

/** Removes credential shapes from free text. Pure; used by logs, errors and span attributes. */
export function scrub(text: string): string {
  let out = text;
  for (const [re, rep] of SCRUBBERS) out = out.replace(re, rep);
  return out;
}
