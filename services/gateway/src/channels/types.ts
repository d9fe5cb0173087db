// What every chat-platform adapter produces and consumes. Adapters are pure:
// they build the exact bytes a platform signed, parse its payloads, and describe
// the HTTP calls (with secret placeholders) that send a reply back.
import { createHash } from 'node:crypto';
import { TalonError } from '@talon/kit/errors';
import type { WebhookScheme } from '@talon/proto';

export const CHANNELS = ['telegram', 'slack', 'discord', 'webhook', 'whatsapp', 'matrix', 'mattermost'] as const;
export type Channel = (typeof CHANNELS)[number];

export function isChannel(v: string): v is Channel {
  return (CHANNELS as readonly string[]).includes(v);
}

/** A message from a platform user, normalised. */
export interface InboundEvent {
  channel: Channel;
  /** Platform message id, unique per platform message (the dedupe key). */
  dedupeId: string;
  /** The sender's platform account ([A-Za-z0-9_.-]) and display name (informational). */
  account: string;
  displayName: string;
  /** Platform conversation the reply goes to (also the memory thread id). */
  threadId: string;
  text: string;
}

export type WebhookOutcome =
  /** Answer the platform directly (Slack url_verification, Discord PING) without a turn. */
  | { kind: 'respond'; status: number; body: unknown }
  /** Nothing for the agent (bot echoes, edits, joins): acknowledged and dropped. */
  | { kind: 'ignore'; reason: string }
  | { kind: 'message'; event: InboundEvent }
  /** Several messages in one payload (WhatsApp batches): each is accepted as a turn of its own. */
  | { kind: 'messages'; events: InboundEvent[] };

/** What the vault must check (through egress) before the body is believed. */
export interface SignatureCheck {
  secretName: string;
  scheme: WebhookScheme;
  message: Buffer;
  signature: string;
}

/** A webhook refused before or at signature verification: 401, counted as an auth failure. */
export class WebhookRejected extends TalonError {
  constructor(message: string) {
    super('unauthenticated', message);
    this.name = 'WebhookRejected';
  }
}

/** A GET subscription handshake (WhatsApp) refused: 403, counted as an auth failure. */
export class HandshakeRefused extends TalonError {
  constructor(message: string) {
    super('permission_denied', message);
    this.name = 'HandshakeRefused';
  }
}

/** One HTTP call to a platform through egress. Secrets appear only as {{secret:NAME}} placeholders. */
export interface PlatformCall {
  /** PUT: Matrix sends (idempotent by transaction id). */
  method: 'POST' | 'PUT';
  url: string;
  headers: Record<string, string>;
  body: string;
}

export type SendVerdict =
  { ok: true; messageId: string } | { ok: false; retry: true; afterMs?: number; code: string } | { ok: false; retry: false; code: string };

export type HeaderBag = Record<string, string | string[] | undefined>;

export function header(h: HeaderBag, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Deterministic inbound id (and Nats-Msg-Id) of a platform message. */
export function inboundIdFor(channel: Channel, dedupeId: string): string {
  return `${channel}-${createHash('sha256').update(dedupeId).digest('hex').slice(0, 32)}`;
}

/** Account and thread components are checked against this before use in KV keys and memory ids. */
export const ACCOUNT = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})?$/;

/** Parses a unix-seconds timestamp header and enforces the replay window. */
export function checkTimestamp(raw: string | undefined, nowS: number, windowS: number, what: string): number {
  if (raw === undefined || !/^\d{1,12}$/.test(raw)) throw new WebhookRejected(`missing or malformed ${what}`);
  const ts = Number(raw);
  if (Math.abs(nowS - ts) > windowS) {
    throw new WebhookRejected(`${what} is more than ${windowS} s away from the gateway's clock (replayed or delayed request)`);
  }
  return ts;
}

/** Statuses that mean "try again later" for any platform. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

export function parseJsonObject(raw: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new TalonError('invalid_json', 'the webhook body is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new TalonError('invalid_argument', 'the webhook body must be a JSON object');
  return v as Record<string, unknown>;
}

export function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

export function str(v: unknown, max = 100_000): string | undefined {
  return typeof v === 'string' && v.length <= max ? v : undefined;
}

/** Integer ids (Telegram) as decimal strings; numbers past 2^53 are refused rather than rounded. */
export function intId(v: unknown): string | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  return undefined;
}

/**
 * Splits text into parts of at most `max` UTF-16 units, preferring paragraph,
 * line and word boundaries, never splitting a surrogate pair.
 */
export function splitText(text: string, max: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > max) {
    let cut = -1;
    for (const sep of ['\n\n', '\n', ' ']) {
      const i = rest.lastIndexOf(sep, max);
      if (i > max / 2) {
        cut = i + sep.length;
        break;
      }
    }
    if (cut < 0) {
      cut = max;
      const c = rest.charCodeAt(cut - 1);
      if (c >= 0xd800 && c <= 0xdbff) cut -= 1;
    }
    out.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest.length > 0 || out.length === 0) out.push(rest);
  return out.filter((p, i) => p.length > 0 || i === 0);
}
