// What VaultService.Watch streams to egress: the vault's epoch and this replica's seal
// state, sent once on subscribe and again only when one of them moves. No I/O here but the
// `read` it is given; the triggers are this replica's own changes (vault.ts) and other
// replicas' epoch changes (epoch-listener.ts).
export interface VaultStateView {
  epoch: number;
  sealed: boolean;
}

type Send = (s: VaultStateView) => void;

interface Subscriber {
  send: Send;
  /** What this subscriber was last sent ("epoch:sealed"), so it gets each state once. */
  sent: string | undefined;
}

const key = (s: VaultStateView): string => `${s.epoch}:${s.sealed}`;

export class StateWatch {
  private readonly read: () => Promise<VaultStateView>;
  private readonly readSealed: () => boolean;
  private readonly subs = new Set<Subscriber>();
  private running: Promise<void> | undefined;
  private again = false;
  private lastEpoch = 0;

  /**
   * `read` reads the current state (the epoch from the database); `readSealed` the seal state
   * alone, used when the database cannot be read (the last epoch read is kept).
   */
  constructor(read: () => Promise<VaultStateView>, readSealed: () => boolean) {
    this.read = read;
    this.readSealed = readSealed;
  }

  get subscribers(): number {
    return this.subs.size;
  }

  /** Sends the current state to `send` now, then on every change; returns the unsubscribe. */
  subscribe(send: Send): { done: Promise<void>; unsubscribe: () => void } {
    const sub: Subscriber = { send, sent: undefined };
    this.subs.add(sub);
    return { done: this.changed(), unsubscribe: () => this.subs.delete(sub) };
  }

  /**
   * Something may have changed: reads the state once and sends it to every subscriber that has
   * not seen it. Calls while a read is running coalesce into one more read after it. Nobody
   * subscribed: nothing is read.
   */
  changed(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        if (this.subs.size === 0) break;
        let s: VaultStateView;
        try {
          s = await this.read();
          this.lastEpoch = s.epoch;
        } catch {
          // The database is away: the seal state is still this replica's own to report.
          s = { epoch: this.lastEpoch, sealed: this.readSealed() };
        }
        const k = key(s);
        for (const sub of this.subs) {
          if (sub.sent === k) continue;
          sub.sent = k;
          sub.send(s);
        }
      } while (this.again);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }
}
