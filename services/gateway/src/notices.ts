// Short notices from the gateway itself to a platform user (pairing code, "you
// are paired"). They are courtesy messages, not agent replies: sent through
// egress with a few quick retries, bounded in number, and not kept across
// restarts (the sender gets the code again when they write again).
import { KV_BUCKETS } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import type { NatsConnection } from '@talon/kit/nats';
import { Pairing } from '@talon/proto';
import type { Subscription } from '@nats-io/transport-node';
import type { ChannelAdapter } from './channels/index.ts';
import { isChannel, type Channel } from './channels/types.ts';
import type { CallSender } from './sender.ts';

export interface Notifier {
  notify(channel: Channel, threadId: string, text: string, key: string): void;
}

export class PlatformNotifier implements Notifier {
  private readonly sender: CallSender;
  private readonly adapters: Record<Channel, ChannelAdapter>;
  private readonly log: Logger;
  private readonly maxInflight: number;
  private inflight = 0;
  private sub: Subscription | undefined;
  /** Notices delivered (for logs and tests). */
  sent = 0;

  constructor(sender: CallSender, adapters: Record<Channel, ChannelAdapter>, log: Logger, maxInflight = 64) {
    this.sender = sender;
    this.adapters = adapters;
    this.log = log;
    this.maxInflight = maxInflight;
  }

  notify(channel: Channel, threadId: string, text: string, key: string): void {
    if (this.inflight >= this.maxInflight) {
      this.log.warn({ channel }, 'too many notices in flight; dropping one (the sender gets it on their next message)');
      return;
    }
    this.inflight += 1;
    void this.run(channel, threadId, text, key).finally(() => (this.inflight -= 1));
  }

  private async run(channel: Channel, threadId: string, text: string, key: string): Promise<void> {
    let calls;
    try {
      calls = this.adapters[channel].send(threadId, text, key);
    } catch (err) {
      this.log.warn({ channel, err: (err as Error).message }, 'cannot address a notice');
      return;
    }
    for (const call of calls) {
      for (let attempt = 1; ; attempt++) {
        const v = await this.sender.send(channel, call);
        if (v.ok) break;
        if (!v.retry || attempt >= 4) {
          this.log.warn({ channel, code: v.code, attempt }, 'notice not delivered');
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(v.afterMs ?? 500 * 2 ** attempt, 10_000)));
      }
    }
    this.sent += 1;
    this.log.info({ channel, key: key.split(':')[0] }, 'notice delivered');
  }

  /**
   * Tells newly paired senders they can start (pairings approved in the CLI or by
   * another replica too). A queue group makes one replica send each notice.
   */
  watchPairings(nc: NatsConnection, enabled: readonly Channel[]): void {
    const prefix = `$KV.${KV_BUCKETS.pairings}.paired.`;
    this.sub = nc.subscribe(`${prefix}>`, {
      queue: 'gateway-pairing-notices',
      callback: (_err, msg) => {
        if (msg.data.length === 0) return; // delete marker
        try {
          const p = Pairing.decode(msg.data);
          const ch = p.identity?.channel ?? '';
          if (!isChannel(ch) || !enabled.includes(ch) || ch === 'discord' || ch === 'webhook' || !p.threadId) return;
          this.notify(ch, p.threadId, `You are now paired with Talon (as ${p.userId}). Send a message to start.`, `paired:${p.code}`);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'undecodable pairing record');
        }
      },
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
