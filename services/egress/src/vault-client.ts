// Egress's link to the vault (gRPC over mTLS; the vault answers only egress).
// Status is polled so that sealing, unsealing or any secret change (the epoch)
// refreshes the scan index promptly; values are fetched per request.
import { createClient, unary, type TlsMaterial } from '@talon/kit/grpc';
import { TalonError } from '@talon/kit/errors';
import type { Logger } from '@talon/kit/log';
import {
  VaultServiceClient,
  type Placement,
  type ResolveRequest,
  type SecretFingerprint,
  type SecretInfo,
  type VerifySignatureRequest,
} from '@talon/proto';

export interface VaultApi {
  resolve(req: ResolveRequest): Promise<Buffer>;
}

export class VaultLink implements VaultApi {
  private readonly client: InstanceType<typeof VaultServiceClient>;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private epoch = -1;
  private sealedState: boolean | undefined;
  private reachable = false;
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

  constructor(addr: string, tls: TlsMaterial, log: Logger, opts: { cacheMs?: number } = {}) {
    this.client = createClient(VaultServiceClient, addr, tls, 'vault');
    this.log = log;
    this.cacheMs = opts.cacheMs ?? 0;
  }

  private clearCache(): void {
    for (const e of this.cache.values()) e.value.fill(0);
    this.cache.clear();
  }

  get state(): { reachable: boolean; sealed: boolean | undefined; epoch: number } {
    return { reachable: this.reachable, sealed: this.sealedState, epoch: this.epoch };
  }

  start(pollMs: number): void {
    const tick = async () => {
      try {
        const st = await unary(this.client, this.client.status, {}, { timeoutMs: 2000 });
        if (!this.reachable) this.log.info({ sealed: st.sealed }, 'vault reachable');
        if (st.sealed || st.epoch !== this.statusEpoch) this.clearCache();
        this.statusEpoch = st.epoch;
        this.reachable = true;
        this.sealedState = st.sealed;
        if (st.epoch !== this.epoch) {
          const idx = await unary(this.client, this.client.scanIndex, {}, { timeoutMs: 5000 });
          this.epoch = idx.epoch;
          this.onIndex?.(idx.secrets);
          this.log.info({ epoch: idx.epoch, secrets: idx.secrets.length }, 'scan index refreshed from vault');
        }
      } catch (err) {
        if (this.reachable) this.log.warn({ err: (err as Error).message }, 'vault unreachable; requests that need a secret fail closed');
        this.reachable = false;
        this.clearCache();
      } finally {
        this.timer = setTimeout(() => void tick(), pollMs);
        this.timer.unref();
      }
    };
    void tick();
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
    this.clearCache();
    if (this.timer) clearTimeout(this.timer);
    this.client.close();
  }
}

export type { Placement };
