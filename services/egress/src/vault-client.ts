// Egress's link to the vault (gRPC over mTLS; the vault answers only egress).
// Status is polled so that sealing, unsealing or any secret change (the epoch)
// refreshes the scan index promptly; values are fetched per request.
import { callUnary, createClient, TalonError, type Logger, type TlsMaterial } from '@talon/kit';
import {
  VaultServiceClient,
  type Placement,
  type ResolveRequest,
  type ResolveResponse,
  type ScanIndexResponse,
  type SecretFingerprint,
  type StatusResponse,
  type ListSecretsResponse,
  type SecretInfo,
  type VerifySignatureRequest,
  type VerifySignatureResponse,
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

  constructor(addr: string, tls: TlsMaterial, log: Logger) {
    this.client = createClient(VaultServiceClient, addr, tls, 'vault');
    this.log = log;
  }

  get state(): { reachable: boolean; sealed: boolean | undefined; epoch: number } {
    return { reachable: this.reachable, sealed: this.sealedState, epoch: this.epoch };
  }

  start(pollMs: number): void {
    const tick = async () => {
      try {
        const st = await callUnary<unknown, StatusResponse>(this.client, 'status', {}, { timeoutMs: 2000 });
        if (!this.reachable) this.log.info({ sealed: st.sealed }, 'vault reachable');
        this.reachable = true;
        this.sealedState = st.sealed;
        if (st.epoch !== this.epoch) {
          const idx = await callUnary<unknown, ScanIndexResponse>(this.client, 'scanIndex', {}, { timeoutMs: 5000 });
          this.epoch = idx.epoch;
          this.onIndex?.(idx.secrets);
          this.log.info({ epoch: idx.epoch, secrets: idx.secrets.length }, 'scan index refreshed from vault');
        }
      } catch (err) {
        if (this.reachable) this.log.warn({ err: (err as Error).message }, 'vault unreachable; requests that need a secret fail closed');
        this.reachable = false;
      } finally {
        this.timer = setTimeout(() => void tick(), pollMs);
        this.timer.unref();
      }
    };
    void tick();
  }

  async resolve(req: ResolveRequest): Promise<Buffer> {
    try {
      const res = await callUnary<ResolveRequest, ResolveResponse>(this.client, 'resolve', req, { timeoutMs: 5000 });
      return Buffer.from(res.value);
    } catch (err) {
      if (err instanceof TalonError && (err.code === 'unavailable' || err.code === 'timeout')) {
        throw new TalonError('unavailable', 'the vault is unreachable; requests that need a secret fail closed until it is back');
      }
      throw err;
    }
  }

  async verifySignature(req: VerifySignatureRequest): Promise<boolean> {
    const res = await callUnary<VerifySignatureRequest, VerifySignatureResponse>(this.client, 'verifySignature', req, { timeoutMs: 5000 });
    return res.valid;
  }

  async listSecrets(): Promise<SecretInfo[]> {
    const res = await callUnary<unknown, ListSecretsResponse>(this.client, 'listSecrets', {}, { timeoutMs: 5000 });
    return res.secrets;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.client.close();
  }
}

export type { Placement };
