// Webhook intake for chat platforms. Order matters and is the security boundary:
//   1. the platform's signature is checked (by the vault, through egress) over the
//      exact raw bytes, within the replay window, before the body is even parsed;
//   2. retries of a platform message already accepted are acknowledged, not re-run;
//   3. the sender must be paired with a Talon user, or gets a pairing code only;
//   4. any credential in the text is redacted (egress's scanner), then the turn is
//      stored in JetStream (deduplicated by platform message id) before the
//      platform hears 200, so an accepted message survives any crash.
import type { JetStreamClient } from '@nats-io/jetstream';
import { queueInbound } from './queue.ts';
import { SUBJECTS } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import { InboundMessage, Role, type ChannelIdentity } from '@talon/proto';
import type { ChannelAdapter } from './channels/index.ts';
import { ephemeral } from './channels/discord.ts';
import { TalonError } from '@talon/kit/errors';
import {
  ACCOUNT,
  HandshakeRefused,
  inboundIdFor,
  WebhookRejected,
  type Channel,
  type HeaderBag,
  type InboundEvent,
} from './channels/types.ts';
import type { WebhookVerifier } from './egress-api.ts';
import { redactMessages, type TextRedactor } from './redaction.ts';
import type { Notifier } from './notices.ts';
import type { Bucket } from './stores/kv.ts';
import { displayCode, type PairingStore } from './stores/pairing.ts';

export interface WebhookResult {
  status: number;
  body: unknown;
  /** What happened, for logs and metrics (never message content). */
  outcome: 'accepted' | 'duplicate' | 'pairing_required' | 'ignored' | 'answered';
  inboundId?: string;
}

export interface IngressDeps {
  adapters: Record<Channel, ChannelAdapter>;
  verifier: WebhookVerifier;
  redactor: TextRedactor;
  pairings: PairingStore;
  seen: Bucket;
  js: JetStreamClient;
  notifier: Notifier;
  log: Logger;
  now?: () => number;
}

const THREAD = /^[A-Za-z0-9][A-Za-z0-9:@._+-]{0,199}$/;

export function pairingNotice(code: string, ttlMs: number): string {
  const hours = Math.round(ttlMs / 3_600_000);
  return (
    `Hi! This Talon assistant only talks to people its operator has approved. ` +
    `Your pairing code is ${displayCode(code)}. Send it to the operator; they approve it with ` +
    `\`talon pairing approve ${displayCode(code)} --user <name>\` (after \`talon users add <name>\` if you are new) ` +
    `or in the web UI. ` +
    `The code is valid for ${hours >= 1 ? `${hours} h` : `${Math.round(ttlMs / 60_000)} min`}.`
  );
}

export class WebhookIngress {
  private readonly adapters: Record<Channel, ChannelAdapter>;
  private readonly verifier: WebhookVerifier;
  private readonly redactor: TextRedactor;
  private readonly pairings: PairingStore;
  private readonly seen: Bucket;
  private readonly js: JetStreamClient;
  private readonly notifier: Notifier;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(deps: IngressDeps) {
    this.adapters = deps.adapters;
    this.verifier = deps.verifier;
    this.redactor = deps.redactor;
    this.pairings = deps.pairings;
    this.seen = deps.seen;
    this.js = deps.js;
    this.notifier = deps.notifier;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
  }

  /** Checks the signature; throws WebhookRejected (401) or an unavailable error (503: the platform retries). */
  async verify(channel: Channel, headers: HeaderBag, raw: Buffer): Promise<void> {
    const check = this.adapters[channel].signature(headers, raw, Math.floor(this.now() / 1000));
    const valid = await this.verifier.verify(check);
    if (!valid) throw new WebhookRejected(`the ${channel} webhook signature does not match`);
  }

  /** Whether the channel answers a GET subscription handshake on its webhook (WhatsApp). */
  hasHandshake(channel: Channel): boolean {
    return this.adapters[channel].handshake !== undefined;
  }

  /**
   * A GET subscription handshake: the challenge to echo once the vault confirms the token in the
   * query; HandshakeRefused (403) otherwise, or an unavailable error when it cannot be checked.
   */
  async handshake(channel: Channel, query: URLSearchParams): Promise<string> {
    const h = this.adapters[channel].handshake;
    if (!h) throw new TalonError('method_not_allowed', 'webhooks are POSTed');
    const { check, challenge } = h(query);
    if (!(await this.verifier.verify(check))) throw new HandshakeRefused(`the ${channel} verify token does not match`);
    return challenge;
  }

  async handle(channel: Channel, headers: HeaderBag, raw: Buffer): Promise<WebhookResult> {
    await this.verify(channel, headers, raw);
    return this.accept(channel, raw);
  }

  /**
   * Steps 2–4 for a payload that is authentic already: a verified webhook, or an update the
   * gateway fetched itself through egress (Telegram long polling, channels/telegram-poller.ts).
   */
  async accept(channel: Channel, raw: Buffer): Promise<WebhookResult> {
    const outcome = this.adapters[channel].parse(raw);
    if (outcome.kind === 'respond') return { status: outcome.status, body: outcome.body, outcome: 'answered' };
    if (outcome.kind === 'ignore') return { status: 200, body: { ok: true, ignored: outcome.reason }, outcome: 'ignored' };
    if (outcome.kind === 'messages') return this.acceptBatch(outcome.events);
    return this.acceptEvent(outcome.event, { inline: true });
  }

  /**
   * A payload carrying several messages (WhatsApp): each is a turn of its own, deduplicated by its
   * own id. A failure (NATS down) fails the whole payload; the platform's retry then skips the
   * messages accepted already and queues the rest.
   */
  private async acceptBatch(events: readonly InboundEvent[]): Promise<WebhookResult> {
    const results: WebhookResult[] = [];
    for (const ev of events) results.push(await this.acceptEvent(ev, { inline: true }));
    const order = ['accepted', 'pairing_required', 'duplicate', 'ignored'] as const;
    const outcome = order.find((o) => results.some((r) => r.outcome === o)) ?? 'ignored';
    return {
      status: 200,
      body: { ok: true, messages: results.map((r) => r.outcome) },
      outcome,
      inboundId: results.find((r) => r.outcome === outcome)?.inboundId,
    };
  }

  /**
   * Steps 3–4 for a message parsed already: by the steps above, or from a platform
   * connection the gateway holds itself (the Discord Gateway, channels/discord-gateway-runner.ts).
   */
  async acceptEvent(ev: InboundEvent, opts: { inline?: boolean } = {}): Promise<WebhookResult> {
    const channel = ev.channel;
    if (!ACCOUNT.test(ev.account) || !THREAD.test(ev.threadId)) {
      return { status: 200, body: { ok: true, ignored: 'unusable sender or conversation id' }, outcome: 'ignored' };
    }
    const inboundId = inboundIdFor(channel, ev.dedupeId);
    if (await this.seen.get(`seen.${inboundId}`)) {
      return { status: 200, body: this.ackBody(channel, true), outcome: 'duplicate', inboundId };
    }
    const pairing = await this.pairings.lookup(channel, ev.account);
    if (!pairing) return this.unpaired(ev, inboundId, opts.inline === true);
    await this.publish(ev, inboundId, pairing.userId);
    await this.seen.kv.put(`seen.${inboundId}`, new Uint8Array([1])).catch((err: unknown) => {
      // JetStream's own dedupe window still covers quick retries.
      this.log.warn({ inbound_id: inboundId, err: (err as Error).message }, 'could not record inbound message as seen');
    });
    return { status: 200, body: this.ackBody(channel, false), outcome: 'accepted', inboundId };
  }

  private ackBody(channel: Channel, duplicate: boolean): unknown {
    if (channel === 'discord') return ephemeral('Talon is on it; the answer will appear in this channel.');
    return duplicate ? { ok: true, duplicate: true } : { ok: true };
  }

  private async publish(ev: InboundEvent, id: string, userId: string): Promise<void> {
    const clean = await redactMessages(this.redactor, [{ role: Role.ROLE_USER, content: ev.text, name: '' }]);
    const inbound: InboundMessage = {
      id,
      conversation: { userId, channel: ev.channel, threadId: ev.threadId },
      messages: clean.messages,
      redacted: clean.labels,
      stream: false,
      reply: { subject: SUBJECTS.channelReply(ev.channel), streamSubject: '', requestId: id },
      model: '',
      receivedAtMs: this.now(),
      temperature: undefined,
      maxTokens: undefined,
    };
    await queueInbound(this.js, SUBJECTS.inbound(ev.channel), InboundMessage.encode(inbound).finish(), id, {
      unavailable: 'the message could not be queued (NATS unavailable); the platform will retry',
    });
  }

  /** `inline`: the platform waits for this answer (a webhook), which may carry the notice itself. */
  private async unpaired(ev: InboundEvent, inboundId: string, inline: boolean): Promise<WebhookResult> {
    const identity: ChannelIdentity = { channel: ev.channel, account: ev.account, displayName: ev.displayName.slice(0, 64) };
    const { request, notify } = await this.pairings.request(identity, ev.threadId, this.now());
    const text = pairingNotice(request.code, request.expiresAtMs - request.createdAtMs);
    await this.seen.kv.put(`seen.${inboundId}`, new Uint8Array([2])).catch(() => undefined);
    this.log.info({ channel: ev.channel, account: ev.account, notify }, 'unpaired sender; pairing code issued');
    switch (inline ? ev.channel : 'notify') {
      case 'discord':
        // The interaction response itself carries the code (only the sender sees it).
        return { status: 200, body: ephemeral(text), outcome: 'pairing_required', inboundId };
      case 'webhook':
        return {
          status: 202,
          body: { status: 'pairing_required', pairing_code: displayCode(request.code), message: text },
          outcome: 'pairing_required',
          inboundId,
        };
      default:
        if (notify) this.notifier.notify(ev.channel, ev.threadId, text, `pairing:${request.code}:${request.notifiedAtMs}`);
        return { status: 200, body: { ok: true }, outcome: 'pairing_required', inboundId };
    }
  }
}
