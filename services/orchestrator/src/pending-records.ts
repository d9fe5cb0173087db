// A turn's answer is recorded in memory just after its reply is published (off the
// user's wait). The next turn of the same conversation must still see that answer
// in its history, even when the user replies within milliseconds — possibly before
// publish() has even returned here, since the gateway sees the reply as soon as
// JetStream stores it. So a hold is taken before the reply goes out and released
// once the answer is recorded (or the attempt failed); the next turn of that
// conversation in this process waits for it.
import type { ConversationRef } from '@talon/proto';

export interface Hold {
  release(): void;
}

export class PendingRecords {
  private readonly byConversation = new Map<string, Set<Promise<void>>>();

  static key(c: ConversationRef | undefined): string | undefined {
    return c ? `${c.userId}\u0000${c.channel}\u0000${c.threadId}` : undefined;
  }

  /** Marks a record of this conversation as in flight until `release()` (idempotent). */
  hold(conversation: ConversationRef | undefined): Hold {
    const key = PendingRecords.key(conversation);
    if (key === undefined) return { release: () => undefined };
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    let set = this.byConversation.get(key);
    if (!set) this.byConversation.set(key, (set = new Set()));
    set.add(done);
    return {
      release: () => {
        release();
        const s = this.byConversation.get(key);
        if (s?.delete(done) && s.size === 0) this.byConversation.delete(key);
      },
    };
  }

  /** Resolves once the conversation has no record in flight that was held before this call. */
  async settled(conversation: ConversationRef | undefined): Promise<void> {
    const key = PendingRecords.key(conversation);
    const set = key === undefined ? undefined : this.byConversation.get(key);
    if (set) await Promise.all([...set]);
  }

  get size(): number {
    return this.byConversation.size;
  }
}

/** Retries an idempotent write a few times, with backoff, before giving up. */
export async function withRetries(fn: () => Promise<void>, attempts: number, baseDelayMs: number): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, baseDelayMs * 2 ** (i - 1)));
    }
  }
}
