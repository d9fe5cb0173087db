// The one place a request egress handled is turned into something recorded (the
// audit event on TALON_AUDIT, which the HAR export, the operator audit view and
// `talon egress` read). Pure. Nothing else may serialise a request for recording:
// test/security/boundaries.test.ts checks that only this module builds the
// request fields of an EgressDecision.
//
// Records hold redactions, never values: every span the leak scanner flags in the
// host, a path segment, a query parameter or a header value is replaced by
// [REDACTED:<rule>] (or [REDACTED:secret:<name>] for a vault secret), then the
// joined result is scanned again so that a credential split across segments,
// parameters or headers is not reassembled in the record; if it still carries
// one, the whole field is replaced. Secret placeholders ({{secret:NAME}}) are
// names and are kept.
import { PLACEHOLDER_PATTERN } from '@talon/kit/contracts';
import { scrub } from '@talon/kit/log';
import type { Header } from '@talon/proto';

export type RecordLocation = 'url' | 'header';

/** What the record builder needs from the leak scanner (see scanning.ts). */
export interface RecordScanner {
  /** The text with every flagged span replaced by a [REDACTED:…] marker, and the labels replaced. */
  redact(text: string, location: RecordLocation, field?: string): { text: string; labels: readonly string[] };
  /** Labels of what the scanner finds in the text (empty: clean). */
  labels(text: string, location: RecordLocation, field?: string): readonly string[];
}

/** The parts of a request a decision records, as the caller sent them. */
export interface RequestParts {
  host: string;
  /** Path without the query. */
  path: string;
  /** Query including its leading '?', or ''. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface RecordedParts {
  host: string;
  path: string;
  query: string;
  requestHeaders: Header[];
}

/** Headers recorded as present but never with their value. */
const NEVER_RECORDED = new Set(['proxy-authorization', 'cookie', 'set-cookie']);
/** A value that is only placeholders (with an auth scheme): names, nothing to hide. */
function placeholdersOnly(value: string): boolean {
  const rest = value.replace(new RegExp(PLACEHOLDER_PATTERN.source, 'g'), '');
  return rest !== value && /^(?:bearer|basic|token)?[\s:,;]*$/i.test(rest);
}

export function marker(labels: readonly string[]): string {
  return `[REDACTED:${[...new Set(labels)].join(',') || 'credential'}]`;
}

/**
 * Redacts each piece, then scans the pieces joined again — as written (`join`)
 * and as bare values run together (`value` picks a piece's value) — so a
 * credential split across pieces is not reassembled in the record; if either
 * still carries one, every piece becomes the marker.
 */
function redactJoined(s: RecordScanner, pieces: readonly string[], join: string, value: (piece: string) => string): string {
  const out = pieces.map((p) => (p === '' ? p : s.redact(p, 'url').text));
  const joined = out.join(join);
  const left = [...s.labels(joined, 'url'), ...s.labels(out.map(value).join(''), 'url')];
  return left.length === 0 ? joined : pieces.map(() => marker(left)).join(join);
}

function redactQuery(s: RecordScanner, query: string): string {
  if (query === '' || query === '?') return query;
  const params = query.slice(1).split('&');
  return `?${redactJoined(s, params, '&', (p) => p.slice(p.indexOf('=') + 1))}`;
}

function redactPath(s: RecordScanner, path: string): string {
  return redactJoined(s, path.split('/'), '/', (p) => p);
}

function headerList(headers: RequestParts['headers']): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const value of Array.isArray(v) ? v : [v]) out.push([name.toLowerCase(), value]);
  }
  return out;
}

/**
 * Headers for a record. With a scanner, each value is redacted (except those in
 * `scanned`, which the leak scanner already read and found clean), then all
 * values are scanned joined in order (a credential split across two headers); if
 * that still finds one, every value that is not only placeholders is replaced.
 */
export function recordHeaders(s: RecordScanner | undefined, headers: RequestParts['headers'], scanned?: ReadonlySet<string>): Header[] {
  const list = headerList(headers);
  let redacted = false;
  const recorded = list.map(([name, value]): Header => {
    if (NEVER_RECORDED.has(name)) return { name, value: '[REDACTED]' };
    if (!s || scanned?.has(name) || placeholdersOnly(value)) return { name, value: scrub(value) };
    const r = s.redact(value, 'header', name);
    if (r.labels.length > 0) redacted = true;
    return { name, value: scrub(r.text) };
  });
  if (!s || (scanned && !redacted)) return recorded;
  const left = s.labels(recorded.map((h) => h.value).join(''), 'header');
  if (left.length === 0) return recorded;
  return recorded.map((h) => (h.value === '[REDACTED]' || placeholdersOnly(h.value) ? h : { name: h.name, value: marker(left) }));
}

/**
 * The recorded form of a request. `clean`: the leak scanner already read the URL
 * and these headers and found nothing, so they are recorded as they are (after
 * the generic credential scrub), which keeps the allowed path cheap; headers it
 * did not read (hop-by-hop ones egress does not forward) are still redacted.
 */
export function recordRequest(s: RecordScanner | undefined, r: RequestParts, clean?: { headers: ReadonlySet<string> }): RecordedParts {
  if (!s || clean) {
    return { host: r.host, path: scrub(r.path), query: scrub(r.query), requestHeaders: recordHeaders(s, r.headers, clean?.headers) };
  }
  const hostLabels = s.labels(r.host, 'url');
  return {
    host: hostLabels.length > 0 ? marker(hostLabels) : r.host,
    path: scrub(redactPath(s, r.path)),
    query: scrub(redactQuery(s, r.query)),
    requestHeaders: recordHeaders(s, r.headers),
  };
}
