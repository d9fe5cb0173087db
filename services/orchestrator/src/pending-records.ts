// A turn's answer is recorded in memory just after its reply is published (off the
// user's wait). The next turn of the same conversation must still see that answer
// in its history, even when the user replies within milliseconds: it waits here for
// the records of its conversation that are still being written by this process.
import type { ConversationRef } from '@talon/proto';

export class PendingRecords {
  private readonly byConversation = new Map<string, Promise<void>>();

  static key(c: ConversationRef | undefined): string | undefined {
    return c ? `${c.userId}\u0000${c.channel}\u0000${c.threadId}` : undefined;
  }

  /** Runs `record` for a conversation; its next turn waits until it settled. */
  track(conversation: ConversationRef | undefined, record: () => Promise<void>): Promise<void> {
    const key = PendingRecords.key(conversation);
    const run = record();
    if (key === undefined) return run;
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.byConversation.set(key, settled);
    void settled.then(() => {
      if (this.byConversation.get(key) === settled) this.byConversation.delete(key);
    });
    return run;
  }

  /** Resolves once the conversation has no record in flight (never rejects). */
  settled(conversation: ConversationRef | undefined): Promise<void> {
    const key = PendingRecords.key(conversation);
    return (key !== undefined && this.byConversation.get(key)) || Promise.resolve();
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
