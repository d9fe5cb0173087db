// Whether a service can do its work right now: started, not stopping, and every
// dependency it needs reachable. Pure; the gRPC health server reports it
// (grpc.health.v1), so a load balancer or Kubernetes stops sending work to an
// instance whose NATS connection or database is gone, and sends it again once back.

export type ServingState = 'SERVING' | 'NOT_SERVING';

/** Read-only view for reporters (grpc.health.v1, the internal HTTP /readyz). */
export type ReadinessView = Pick<Readiness, 'state' | 'missing'>;

export class Readiness {
  private base: ServingState = 'NOT_SERVING';
  private readonly down = new Set<string>();
  private readonly onChange: (s: ServingState) => void;
  private last: ServingState = 'NOT_SERVING';

  constructor(onChange: (s: ServingState) => void) {
    this.onChange = onChange;
  }

  /** What the service itself says: SERVING once started, NOT_SERVING when shutting down. */
  setServing(s: ServingState): void {
    this.base = s;
    this.emit();
  }

  /** A dependency went away (false) or came back (true). */
  setDependency(name: string, up: boolean): void {
    if (up) this.down.delete(name);
    else this.down.add(name);
    this.emit();
  }

  get state(): ServingState {
    return this.base === 'SERVING' && this.down.size === 0 ? 'SERVING' : 'NOT_SERVING';
  }

  /** Dependencies that are down now. */
  get missing(): string[] {
    return [...this.down].sort();
  }

  private emit(): void {
    const s = this.state;
    if (s === this.last) return;
    this.last = s;
    this.onChange(s);
  }
}
