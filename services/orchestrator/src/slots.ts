// A counting semaphore: turns (new and resumed) share the replica's concurrency.
export class Slots {
  private free: number;
  private readonly waiters: Array<() => void> = [];

  constructor(n: number) {
    this.free = n;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((r) => this.waiters.push(r));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free += 1;
  }
}
