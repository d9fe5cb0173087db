// Connection pools to upstreams, keyed by the checked address: each pool connects
// to one IP and verifies TLS against the original host name (SNI + certificate).
import { Pool } from 'undici';
import type { ResolvedAddress } from './resolve.ts';

export interface UpstreamOptions {
  connectTimeoutMs: number;
  /** Extra CA certificates trusted for upstream TLS (tests, private PKI). */
  ca?: string | Buffer | Array<string | Buffer>;
  maxPools?: number;
}

export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();
  private readonly opts: UpstreamOptions;

  constructor(opts: UpstreamOptions) {
    this.opts = opts;
  }

  get(scheme: string, host: string, addr: ResolvedAddress, port: number): Pool {
    const key = `${scheme}//${host}@${addr.address}:${port}`;
    let pool = this.pools.get(key);
    if (pool) {
      // Refresh LRU position.
      this.pools.delete(key);
      this.pools.set(key, pool);
      return pool;
    }
    const ipHost = addr.family === 6 ? `[${addr.address}]` : addr.address;
    pool = new Pool(`${scheme}//${ipHost}:${port}`, {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: {
        timeout: this.opts.connectTimeoutMs,
        ...(scheme === 'https:' ? { servername: host, ...(this.opts.ca ? { ca: this.opts.ca } : {}) } : {}),
      },
    });
    this.pools.set(key, pool);
    const max = this.opts.maxPools ?? 256;
    if (this.pools.size > max) {
      const oldest = this.pools.keys().next().value as string;
      const old = this.pools.get(oldest);
      this.pools.delete(oldest);
      void old?.close().catch(() => undefined);
    }
    return pool;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
  }
}
