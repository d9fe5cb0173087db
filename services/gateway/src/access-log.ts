// The gateway's request log: one info line per HTTP request, written when the
// response is finished (or the client went away). It names the route *template*
// (never the path, whose ids and query may identify people or carry junk), the
// status, the duration, the authenticated principal's ids and the client address;
// never a header, body or token. Probes (/healthz; the internal port's
// /livez and /readyz are the kit's and log nothing) are not logged. Pure but for
// `logRequest`, which writes the line.
import type { Logger } from '@talon/kit/log';
import { isChannel } from './channels/types.ts';

/** Paths that are answered but never logged: health probes, polled every few seconds. */
export const UNLOGGED_PATHS: ReadonlySet<string> = new Set(['/healthz']);

/** Route for a path no handler knows (404s, scanners): a constant, so junk never reaches the log. */
export const UNMATCHED = '(unmatched)';

const STATIC: ReadonlySet<string> = new Set([
  '/',
  '/app.js',
  '/app.css',
  '/v1/chat/completions',
  '/v1/models',
  '/v1/ws',
  '/v1/me',
  '/v1/me/token/rotate',
  '/v1/approvals',
  '/v1/routines',
  '/v1/conversations',
  '/v1/memory',
  '/v1/admin/skills',
  '/v1/admin/secrets',
  '/v1/admin/users',
  '/v1/admin/pairings',
  '/v1/admin/pairings/unpair',
  '/v1/admin/audit',
]);

const PATTERNS: ReadonlyArray<[RegExp, string]> = [
  [/^\/v1\/approvals\/[^/]+\/(approve|deny)$/, '/v1/approvals/{id}/$1'],
  [/^\/v1\/conversations\/$/, '/v1/conversations'],
  // Model names may hold slashes (meta/llama-3): everything after the prefix is the id.
  [/^\/v1\/models\/.+$/, '/v1/models/{id}'],
  [/^\/v1\/conversations\/[^/]+$/, '/v1/conversations/{id}'],
  [/^\/v1\/conversations\/[^/]+\/messages$/, '/v1/conversations/{id}/messages'],
  [/^\/v1\/admin\/tokens\/[^/]+\/revoke$/, '/v1/admin/tokens/{id}/revoke'],
  [/^\/v1\/admin\/pairings\/[^/]+\/(approve|deny)$/, '/v1/admin/pairings/{code}/$1'],
];

/** The route template of a request path (no query): bounded, free of ids. Pure. */
export function routeTemplate(path: string): string {
  if (STATIC.has(path)) return path;
  if (path.startsWith('/hooks/')) {
    const channel = path.slice('/hooks/'.length);
    return isChannel(channel) ? `/hooks/${channel}` : '/hooks/{unknown}';
  }
  for (const [re, template] of PATTERNS) if (re.test(path)) return path.replace(re, template);
  return UNMATCHED;
}

/** Methods as logged: the standard ones, anything else as OTHER (a method is client-chosen text). */
export function logMethod(method: string | undefined): string {
  const m = (method ?? '').toUpperCase();
  return ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].includes(m) ? m : 'OTHER';
}

export interface RequestLine {
  method: string;
  route: string;
  status: number;
  durationMs: number;
  client: string;
  /** The authenticated user and token id; absent before (or without) authentication. */
  user?: string;
  tokenId?: string;
  /** True when the client went away before the response was complete. */
  aborted?: boolean;
}

/** The fields of a request log line. Pure. */
export function requestFields(r: RequestLine): Record<string, unknown> {
  return {
    method: r.method,
    route: r.route,
    status: r.status,
    duration_ms: Math.round(r.durationMs * 10) / 10,
    client: r.client,
    ...(r.user !== undefined ? { user: r.user, token_id: r.tokenId } : {}),
    ...(r.aborted ? { aborted: true } : {}),
  };
}

export function logRequest(log: Pick<Logger, 'info'>, r: RequestLine): void {
  log.info(requestFields(r), 'request');
}
