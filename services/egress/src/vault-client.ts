// Egress's link to the vault (gRPC over mTLS; the vault answers only egress).
// Egress holds VaultService.Watch open: the vault pushes its epoch and seal state when
// they change (nothing while nothing changes), and egress reloads the scan index only
// when the epoch moved. A sealed or unreachable vault is logged once per state change;
// the stream is reopened with backoff. Values are fetched per request.
import { createClient, serverStream, unary, type OpenServerStream, type TlsMaterial } from '@talon/kit/grpc';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import {
  VaultServiceClient,
  type Placement,
  type ResolveRequest,
  type SecretFingerprint,
  type SecretInfo,
  type VaultState,
  type VerifySignatureRequest,
} from '@talon/proto';

export interface VaultApi {
  resolve(req: ResolveRequest): Promise<Buffer>;
}

/** First wait before reopening the watch or reloading the index after a failure; doubled up to `retryMaxMs`. */
const RETRY_FIRST_MS = 100;

export class VaultLink implements VaultApi {
  private readonly client: InstanceType<typeof VaultServiceClient>;
  private readonly log: Logger;
  private readonly retryMaxMs: number;
  private stream: OpenServerStream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private watchRetryMs = RETRY_FIRST_MS;
  /** Epoch of the scan index loaded (as the vault built it). */
  private epoch = -1;
  /** The watch epoch the loaded index answers; the index is reloaded when the pushed epoch differs. */
  private indexFor = -1;
  private indexing = false;
  private sealedState: boolean | undefined;
  private reachable = false;
  /** Whether the outage was logged (once per outage, not per reconnect attempt). */
  private outageLogged = false;
  onIndex: ((fps: readonly SecretFingerprint[]) => void) | undefined;
  /**
   * Values the vault released, per (secret, principal, host, port, placement),
   * kept for at most cacheMs and dropped at once when the vault's epoch moves
   * (any secret change, seal, unseal) or it stops answering. 0 disables it: then
   * every injection is a round trip to the vault (and an audit row there).
   */
  private readonly cache = new Map<string, { value: Buffer; expires: number }>();
  private readonly cacheMs: number;
  private statusEpoch = -1;

  constructor(addr: string, tls: TlsMaterial, log: Logger, opts: { cacheMs?: number; retryMaxMs?: number } = {}) {
    this.client = createClient(VaultServiceClient, addr, tls, 'vault');
    this.log = log;
    this.cacheMs = opts.cacheMs ?? 0;
    this.retryMaxMs = Math.max(RETRY_FIRST_MS, opts.retryMaxMs ?? 5000);
  }

  private clearCache(): void {
    for (const e of this.cache.values()) e.value.fill(0);
    this.cache.clear();
  }

  get state(): { reachable: boolean; sealed: boolean | undefined; epoch: number } {
    return { reachable: this.reachable, sealed: this.sealedState, epoch: this.epoch };
  }

  /** Opens the watch; it is reopened after every failure until close(). */
  start(): void {
    if (this.closed || this.stream) return;
    this.stream = serverStream(
      this.client,
      this.client.watch,
      {},
      { message: (st) => this.onState(st), end: (err) => this.onWatchEnd(err) },
    );
  }

  private onState(st: VaultState): void {
    this.watchRetryMs = RETRY_FIRST_MS;
    if (!this.reachable) {
      this.reachable = true;
      this.outageLogged = false;
      this.log.info({ sealed: st.sealed, epoch: st.epoch }, 'vault reachable');
    } else if (st.sealed !== this.sealedState) {
      if (st.sealed) this.log.warn({ epoch: st.epoch }, 'vault sealed; requests that need a secret fail closed until it is unsealed');
      else this.log.info({ epoch: st.epoch }, 'vault unsealed');
    }
    if (st.sealed || st.epoch !== this.statusEpoch) this.clearCache();
    this.statusEpoch = st.epoch;
    this.sealedState = st.sealed;
    void this.loadIndex();
  }

  private onWatchEnd(err: TalonError | undefined): void {
    this.stream = undefined;
    if (this.closed) return;
    if (this.reachable || !this.outageLogged) {
      this.log.warn({ code: err?.code ?? 'stream_ended', err: err?.message }, 'vault unreachable; requests that need a secret fail closed');
      this.outageLogged = true;
    }
    this.reachable = false;
    this.clearCache();
    const wait = this.watchRetryMs;
    this.watchRetryMs = Math.min(wait * 2, this.retryMaxMs);
    this.timer = setTimeout(() => this.start(), wait);
    this.timer.unref();
  }

  /** Loads the scan index while the pushed epoch differs from the loaded one and the vault is unsealed; one load at a time. */
  private async loadIndex(): Promise<void> {
    if (this.indexing) return;
    this.indexing = true;
    let retryMs = RETRY_FIRST_MS;
    let warned = false;
    try {
      while (!this.closed && this.reachable && this.sealedState === false && this.indexFor !== this.statusEpoch) {
        const target = this.statusEpoch;
        try {
          const idx = await unary(this.client, this.client.scanIndex, {}, { timeoutMs: 5000 });
          this.epoch = idx.epoch;
          this.indexFor = target;
          this.onIndex?.(idx.secrets);
          this.log.info({ epoch: idx.epoch, secrets: idx.secrets.length }, 'scan index refreshed from vault');
        } catch (err) {
          // E.g. the call reached another replica that is sealed: the push said unsealed, so try again.
          if (!warned) this.log.warn({ err: (err as Error).message }, 'could not load the scan index from the vault; retrying');
          warned = true;
          await new Promise((r) => setTimeout(r, retryMs).unref());
          retryMs = Math.min(retryMs * 2, this.retryMaxMs);
        }
      }
    } finally {
      this.indexing = false;
    }
  }

  /** A value for one request; the caller owns (and zeroes) the returned Buffer. */
  async resolve(req: ResolveRequest): Promise<Buffer> {
    const key = this.cacheMs > 0 ? JSON.stringify([req.name, req.principal, req.host, req.port, req.placement, req.field]) : '';
    if (key && this.reachable && this.sealedState === false) {
      const hit = this.cache.get(key);
      if (hit && hit.expires > Date.now()) return Buffer.from(hit.value);
    }
    try {
      const res = await unary(this.client, this.client.resolve, req, { timeoutMs: 5000 });
      if (key) {
        this.cache.get(key)?.value.fill(0);
        this.cache.set(key, { value: Buffer.from(res.value), expires: Date.now() + this.cacheMs });
      }
      return Buffer.from(res.value);
    } catch (err) {
      if (err instanceof TalonError && (err.code === 'unavailable' || err.code === 'timeout')) {
        throw new TalonError('unavailable', 'the vault is unreachable; requests that need a secret fail closed until it is back');
      }
      throw err;
    }
  }

  async verifySignature(req: VerifySignatureRequest): Promise<boolean> {
    const res = await unary(this.client, this.client.verifySignature, req, { timeoutMs: 5000 });
    return res.valid;
  }

  async listSecrets(): Promise<SecretInfo[]> {
    const res = await unary(this.client, this.client.listSecrets, {}, { timeoutMs: 5000 });
    return res.secrets;
  }

  close(): void {
    this.closed = true;
    this.clearCache();
    if (this.timer) clearTimeout(this.timer);
    this.stream?.cancel();
    this.stream = undefined;
    this.client.close();
  }
}

export type { Placement };
