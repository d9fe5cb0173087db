// Sends platform calls through egress and classifies the outcome. Egress fills
// the {{secret:...}} placeholders; this module never sees a token. Response
// bodies are read (bounded) only to classify them and are never logged.
import { TalonError } from '@talon/kit/errors';
import type { EgressClient } from '@talon/kit/egress';
import type { ChannelAdapter } from './channels/index.ts';
import type { Channel, PlatformCall, SendVerdict } from './channels/types.ts';

const MAX_RESPONSE = 64 * 1024;

export interface CallSender {
  /** `user`: the Talon user the delivery is for, told to egress for its record (x-talon-user). */
  send(channel: Channel, call: PlatformCall, user?: string): Promise<SendVerdict>;
}

export class PlatformSender implements CallSender {
  private readonly egress: EgressClient;
  private readonly adapters: Record<Channel, ChannelAdapter>;
  private readonly timeoutMs: number;

  constructor(egress: EgressClient, adapters: Record<Channel, ChannelAdapter>, timeoutMs: number) {
    this.egress = egress;
    this.adapters = adapters;
    this.timeoutMs = timeoutMs;
  }

  async send(channel: Channel, call: PlatformCall, user?: string): Promise<SendVerdict> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.timeoutMs);
    try {
      const res = await this.egress.request({
        method: call.method,
        url: call.url,
        headers: call.headers,
        body: call.body,
        signal: ac.signal,
        headersTimeoutMs: this.timeoutMs,
        bodyTimeoutMs: this.timeoutMs,
        ...(user ? { user } : {}),
      });
      let text = '';
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (text.length < MAX_RESPONSE) text += chunk.toString('utf8');
      }
      const ra = res.headers['retry-after'];
      return this.adapters[channel].verdict(res.status, text.slice(0, MAX_RESPONSE), typeof ra === 'string' ? ra : undefined);
    } catch (err) {
      if ((err as Error).name === 'AbortError') return { ok: false, retry: true, code: 'timeout' };
      // Egress refusals (policy, missing secret, sealed vault) are configuration an operator can
      // fix; they are retried with backoff until the reply is too old, like a platform outage.
      const code = err instanceof TalonError ? `egress_${err.code}` : 'egress_error';
      return { ok: false, retry: true, code };
    } finally {
      clearTimeout(timer);
    }
  }
}
