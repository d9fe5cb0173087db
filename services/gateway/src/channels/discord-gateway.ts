// The Discord Gateway (API v10, JSON encoding) as a pure session: payloads in, actions
// out. The runner (../discord-gateway-runner.ts) owns the socket, the timers and the
// publishing; this module decides what to send and when to reconnect, so every
// transition is unit-tested without a socket.
//
// The bot token is never here: IDENTIFY and RESUME carry a `{{secret:NAME}}`
// placeholder that egress fills inside the frame, only for a secret the vault bound to
// the frame placement, Discord's hosts and the gateway principal (egress websocket.ts).
import { obj, str, type InboundEvent } from './types.ts';

/** GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT (privileged: enable it in the developer portal). */
export const DISCORD_INTENTS = (1 << 9) | (1 << 12) | (1 << 15);
export const DISCORD_GATEWAY_QUERY = 'v=10&encoding=json';

const SNOWFLAKE = /^\d{1,20}$/;

/** Close codes after which reconnecting cannot help: the operator must act (Discord's list). */
const FATAL_CLOSES: Record<number, string> = {
  4004: 'authentication failed: the bot token in the vault is wrong or was reset',
  4010: 'invalid shard',
  4011: 'sharding required: the bot is in too many guilds for one connection',
  4012: 'invalid API version',
  4013: 'invalid intents',
  4014: 'disallowed intents: enable the MESSAGE CONTENT intent for the bot in the Discord developer portal',
};
/** Close codes after which the session cannot be resumed (a fresh IDENTIFY). */
const NO_RESUME_CLOSES = new Set([4007, 4009]);

/** A session as kept in KV `talon_channel_state` between connections, restarts and lease holders. */
export interface SavedDiscordSession {
  sessionId: string;
  resumeUrl: string;
  /** The last sequence number whose dispatch was handled (its message durably queued). */
  seq: number;
  selfId?: string;
}

/**
 * A stored session older than this is not resumed: Discord keeps a disconnected session only
 * for a short while (it answers a RESUME of an expired one with INVALID_SESSION anyway).
 */
export const SESSION_MAX_AGE_MS = 3_600_000;
/** A live connection writes its session at least this often, even unchanged: the stored age is how long ago it was alive. */
export const SESSION_REFRESH_MS = 600_000;

/** KV key of a bot's session (named by its token's secret, the only name the gateway knows it by). */
export function discordSessionKey(tokenSecret: string): string {
  return `discord.session.${tokenSecret}`;
}

export function encodeSession(s: SavedDiscordSession): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(s));
}

/** A stored session, or undefined when absent, unreadable, malformed or too old (`storedAtMs`: when it was written). Pure. */
export function decodeSession(value: Uint8Array | undefined, storedAtMs: number, nowMs: number): SavedDiscordSession | undefined {
  if (!value || value.length > 2048 || nowMs - storedAtMs > SESSION_MAX_AGE_MS) return undefined;
  let o: Record<string, unknown> | undefined;
  try {
    o = obj(JSON.parse(new TextDecoder().decode(value)));
  } catch {
    return undefined;
  }
  const sessionId = str(o?.sessionId, 128);
  const resumeUrl = str(o?.resumeUrl, 512);
  const seq = o?.seq;
  const selfId = str(o?.selfId, 20);
  if (!sessionId || !resumeUrl || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  if (!isGatewayUrl(resumeUrl)) return undefined;
  return { sessionId, resumeUrl, seq, ...(selfId && SNOWFLAKE.test(selfId) ? { selfId } : {}) };
}

/** A WebSocket URL (ws: or wss:) that parses; anything else is not connected to. */
function isGatewayUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'wss:' || u.protocol === 'ws:';
  } catch {
    return false;
  }
}

export type GatewayAction =
  | { kind: 'send'; payload: Record<string, unknown> }
  /** Start heartbeating: the first after `firstMs` (jittered), then every `everyMs`. */
  | { kind: 'heartbeat'; everyMs: number; firstMs: number }
  /** A message for the agent; commit(seq) once it is durably accepted. */
  | { kind: 'message'; event: InboundEvent }
  | { kind: 'reconnect'; resume: boolean; reason: string }
  | { kind: 'fatal'; reason: string };

export interface DiscordGatewayOptions {
  /** Vault secret with the bot token, bound to the frame placement (`talon secrets set NAME --ws-frame`). */
  tokenSecret: string;
  intents?: number;
  /** [0, 1): heartbeat jitter (tests pass a constant). */
  random?: () => number;
}

export class DiscordGatewaySession {
  private readonly token: string;
  private readonly intents: number;
  private readonly random: () => number;
  /** The last sequence number whose dispatch was handled (sent in heartbeats and RESUME). */
  private seq: number | null = null;
  private sessionId: string | undefined;
  private resumeUrl: string | undefined;
  private selfId: string | undefined;
  private awaitingAck = false;
  private resuming = false;

  constructor(opts: DiscordGatewayOptions) {
    this.token = `{{secret:${opts.tokenSecret}}}`;
    this.intents = opts.intents ?? DISCORD_INTENTS;
    this.random = opts.random ?? Math.random;
  }

  /** Where to connect next: the resume URL Discord gave when resuming, else the gateway URL. */
  connectUrl(gatewayUrl: string, resume: boolean): string {
    this.resuming = resume && this.sessionId !== undefined && this.seq !== null;
    const base = this.resuming && this.resumeUrl ? this.resumeUrl : gatewayUrl;
    const u = new URL(base);
    u.search = DISCORD_GATEWAY_QUERY;
    return u.toString();
  }

  /** A session kept from an earlier connection (another process, another replica): the next connect resumes it. */
  restore(saved: SavedDiscordSession): void {
    this.sessionId = saved.sessionId;
    this.resumeUrl = saved.resumeUrl;
    this.seq = saved.seq;
    this.selfId = saved.selfId;
  }

  /** What to keep for a later resume; undefined before READY or after the session was invalidated. */
  saved(): SavedDiscordSession | undefined {
    if (this.sessionId === undefined || this.resumeUrl === undefined || this.seq === null) return undefined;
    return { sessionId: this.sessionId, resumeUrl: this.resumeUrl, seq: this.seq, ...(this.selfId ? { selfId: this.selfId } : {}) };
  }

  /** A dispatch was handled (its message published): heartbeats and RESUME report it from now on. */
  commit(seq: number): void {
    if (this.seq === null || seq > this.seq) this.seq = seq;
  }

  get state(): { seq: number | null; sessionId: string | undefined; resuming: boolean } {
    return { seq: this.seq, sessionId: this.sessionId, resuming: this.resuming };
  }

  heartbeatDue(): GatewayAction[] {
    if (this.awaitingAck) return [{ kind: 'reconnect', resume: true, reason: 'no heartbeat ACK (zombied connection)' }];
    this.awaitingAck = true;
    return [{ kind: 'send', payload: { op: 1, d: this.seq } }];
  }

  /** One payload received; `seq` of a dispatch is returned for commit once its actions are done. */
  onPayload(raw: unknown): { actions: GatewayAction[]; seq?: number } {
    const p = obj(raw);
    if (!p || typeof p.op !== 'number') return { actions: [] };
    switch (p.op) {
      case 10: {
        const interval = obj(p.d)?.heartbeat_interval;
        const everyMs = typeof interval === 'number' && interval > 0 ? interval : 41_250;
        this.awaitingAck = false;
        return { actions: [{ kind: 'heartbeat', everyMs, firstMs: Math.floor(everyMs * this.random()) }, this.hello()] };
      }
      case 11:
        this.awaitingAck = false;
        return { actions: [] };
      case 1:
        return { actions: [{ kind: 'send', payload: { op: 1, d: this.seq } }] };
      case 7:
        return { actions: [{ kind: 'reconnect', resume: true, reason: 'Discord asked for a reconnect' }] };
      case 9:
        if (p.d !== true) this.forget();
        return { actions: [{ kind: 'reconnect', resume: p.d === true, reason: 'invalid session' }] };
      case 0:
        return this.dispatch(p);
      default:
        return { actions: [] };
    }
  }

  onClose(code: number): GatewayAction[] {
    const fatal = FATAL_CLOSES[code];
    if (fatal) return [{ kind: 'fatal', reason: `Discord closed the gateway (${code}): ${fatal}` }];
    if (NO_RESUME_CLOSES.has(code)) {
      this.forget();
      return [{ kind: 'reconnect', resume: false, reason: `closed with ${code} (session cannot be resumed)` }];
    }
    return [{ kind: 'reconnect', resume: true, reason: `closed with ${code}` }];
  }

  private hello(): GatewayAction {
    if (this.resuming && this.sessionId !== undefined && this.seq !== null)
      return { kind: 'send', payload: { op: 6, d: { token: this.token, session_id: this.sessionId, seq: this.seq } } };
    return {
      kind: 'send',
      payload: {
        op: 2,
        d: { token: this.token, intents: this.intents, properties: { os: 'linux', browser: 'talon', device: 'talon' } },
      },
    };
  }

  private forget(): void {
    this.sessionId = undefined;
    this.resumeUrl = undefined;
    this.seq = null;
    this.resuming = false;
  }

  private dispatch(p: Record<string, unknown>): { actions: GatewayAction[]; seq?: number } {
    const seq = typeof p.s === 'number' ? p.s : undefined;
    const d = obj(p.d);
    if (p.t === 'READY' && d) {
      this.sessionId = str(d.session_id, 128);
      const resumeUrl = str(d.resume_gateway_url, 512);
      this.resumeUrl = resumeUrl && isGatewayUrl(resumeUrl) ? resumeUrl : undefined;
      this.selfId = str(obj(d.user)?.id, 20);
      return { actions: [], seq };
    }
    if (p.t !== 'MESSAGE_CREATE' || !d) return { actions: [], seq };
    const event = discordMessage(d, this.selfId);
    return { actions: event ? [{ kind: 'message', event }] : [], seq };
  }
}

/** A MESSAGE_CREATE as an inbound event; undefined for bots (ourselves included), empty and system messages. Pure. */
export function discordMessage(d: Record<string, unknown>, selfId?: string): InboundEvent | undefined {
  const id = str(d.id, 20);
  const channel = str(d.channel_id, 20);
  const author = obj(d.author);
  const authorId = str(author?.id, 20);
  if (!id || !SNOWFLAKE.test(id) || !channel || !SNOWFLAKE.test(channel) || !authorId || !SNOWFLAKE.test(authorId)) return undefined;
  if (author?.bot === true || author?.system === true || authorId === selfId) return undefined;
  // 0 default, 19 reply; joins, pins and the like are not for the agent.
  if (d.type !== undefined && d.type !== 0 && d.type !== 19) return undefined;
  const text = str(d.content, 65_536);
  if (text === undefined || text.trim() === '') return undefined;
  return {
    channel: 'discord',
    // Message and interaction ids are both snowflakes, unique across Discord: one dedupe space.
    dedupeId: `discord:${id}`,
    account: authorId,
    displayName: str(author?.global_name, 64) ?? str(author?.username, 64) ?? authorId,
    threadId: channel,
    text,
  };
}
