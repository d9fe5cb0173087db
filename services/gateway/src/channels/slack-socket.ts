// Slack Socket Mode, the pure parts: the apps.connections.open call (the app-level token as
// a placeholder egress fills), its answer, and the envelopes that arrive on the WebSocket.
// An events_api envelope carries exactly the Events API body a webhook would have POSTed,
// so it goes through the same parser (slack.ts) and intake; it is acknowledged by its
// envelope_id only after the intake queued it, and Slack sends an unacknowledged one again.
import { obj, str, type PlatformCall } from './types.ts';

export function connectionsOpenCall(apiUrl: string, appTokenSecret: string): PlatformCall {
  return {
    method: 'POST',
    url: `${apiUrl.replace(/\/$/, '')}/apps.connections.open`,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer {{secret:${appTokenSecret}}}` },
    body: '',
  };
}

/** Errors of apps.connections.open only the operator can fix (a wrong or missing app-level token, Socket Mode off). */
const FATAL_OPEN: Record<string, string> = {
  invalid_auth: 'the app-level token in the vault is not valid',
  not_authed: 'no app-level token was sent',
  not_allowed_token_type: 'the token is not an app-level token (xapp-…) with the connections:write scope',
  account_inactive: 'the app or workspace is inactive',
};

export type OpenVerdict =
  { kind: 'url'; url: string } | { kind: 'retry'; code: string; afterMs?: number } | { kind: 'fatal'; reason: string };

export function parseConnectionsOpen(status: number, body: string, retryAfterHeader?: string): OpenVerdict {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(body));
  } catch {
    j = undefined;
  }
  const afterMs = retryAfterHeader && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) * 1000 : undefined;
  const url = str(j?.url, 2048);
  if (status === 200 && j?.ok === true && url && /^wss?:\/\//.test(url)) return { kind: 'url', url };
  const err = str(j?.error, 64) ?? `http_${status}`;
  const code = /^[a-z_0-9]{1,64}$/.test(err) ? err : 'unknown_error';
  const fatal = FATAL_OPEN[code];
  if (fatal) return { kind: 'fatal', reason: `Slack refused apps.connections.open (${code}): ${fatal}` };
  return { kind: 'retry', code, ...(afterMs !== undefined ? { afterMs } : {}) };
}

export type SocketEnvelope =
  /** An Events API body for the intake; ack `envelopeId` once it is queued. */
  | { kind: 'event'; envelopeId: string; payload: Buffer }
  /** Anything else Slack expects acknowledged (slash commands, interactivity): not handled, acknowledged. */
  | { kind: 'ack'; envelopeId: string }
  /** Slack asks for a new connection (refresh_requested, warning, link_disabled). */
  | { kind: 'reconnect'; reason: string }
  | { kind: 'none' };

export function parseEnvelope(raw: string): SocketEnvelope {
  let j: Record<string, unknown> | undefined;
  try {
    j = obj(JSON.parse(raw));
  } catch {
    return { kind: 'none' };
  }
  if (!j) return { kind: 'none' };
  if (j.type === 'disconnect') return { kind: 'reconnect', reason: `disconnect (${str(j.reason, 64) ?? 'no reason'})` };
  const envelopeId = str(j.envelope_id, 128);
  if (!envelopeId) return { kind: 'none' };
  const payload = obj(j.payload);
  if (j.type === 'events_api' && payload) return { kind: 'event', envelopeId, payload: Buffer.from(JSON.stringify(payload)) };
  return { kind: 'ack', envelopeId };
}

/** The acknowledgement of an envelope. */
export function ackFrame(envelopeId: string): string {
  return JSON.stringify({ envelope_id: envelopeId });
}

/** KV key of the lease under which one gateway replica holds an app's Socket Mode connection. */
export function slackLeaseKey(appTokenSecret: string): string {
  return `lease.gateway.slack.${appTokenSecret}`;
}
