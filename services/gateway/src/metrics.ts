// The gateway's metrics (definitions: @talon/kit/metrics). Label values come from
// closed sets: the route template of access-log.ts (never the path with its ids),
// auth.ts's failure reasons, the name of the limit that was hit.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { counter, METRICS } from '@talon/kit/metrics';
import { routeTemplate, UNLOGGED_PATHS } from './access-log.ts';

export const requests = counter(METRICS.gatewayRequests);
export const authFailures = counter(METRICS.gatewayAuthFailures);
export const rateLimited = counter(METRICS.gatewayRateLimited);

/** Which limit refused a request (the `scope` label). */
export type RateScope = 'address' | 'webhook_address' | 'token' | 'auth_failures';

/** The `route` label: the route template (probe paths as they are; `(unmatched)` for anything unknown). Pure. */
export function routeLabel(rawUrl: string | undefined): string {
  const url = rawUrl ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return UNLOGGED_PATHS.has(path) ? path : routeTemplate(path);
}

/** Counts the request once its response is over (or the client went away), by route template and status. */
export function countRequest(req: IncomingMessage, res: ServerResponse): void {
  res.once('close', () => {
    requests.add({ route: routeLabel(req.url), status: String(res.statusCode) });
  });
}
