// Connections to upstreams. Direct mode: one pool per checked address, connecting
// to exactly that IP while TLS verifies the original host name (SNI + certificate).
// Upstream mode: everything goes through another proxy (an enterprise proxy, or
// mitmdump for inspection); that proxy then does its own name resolution.
import { rootCertificates } from 'node:tls';
import { Pool, ProxyAgent, type Dispatcher } from 'undici';
import type { ResolvedAddress } from './resolve.ts';

export interface UpstreamOptions {
  connectTimeoutMs: number;
  /** Extra CA certificates trusted for upstream TLS (private PKI, or the upstream proxy's interception CA). */
  ca?: string | Buffer;
  /** http(s)://[user:pass@]host:port of a proxy to chain through. */
  upstreamProxy?: string;
  maxPools?: number;
}

export class Upstreams {
  private readonly pools = new Map<string, Pool>();
  private readonly opts: UpstreamOptions;
  private readonly proxy: ProxyAgent | undefined;

  private readonly ca: string[] | undefined;

  constructor(opts: UpstreamOptions) {
    this.opts = opts;
    // Extra CAs add to the public roots; they never replace them.
    this.ca = opts.ca ? [...rootCertificates, opts.ca.toString()] : undefined;
    if (opts.upstreamProxy) {
      const u = new URL(opts.upstreamProxy);
      const token = u.username
        ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`
        : undefined;
      u.username = '';
      u.password = '';
      this.proxy = new ProxyAgent({
        uri: u.toString(),
        ...(token ? { token } : {}),
        connections: 64,
        connect: { timeout: opts.connectTimeoutMs },
        requestTls: { timeout: opts.connectTimeoutMs, ...(this.ca ? { ca: this.ca } : {}) },
        ...(u.protocol === 'https:' && this.ca ? { proxyTls: { ca: this.ca } } : {}),
      });
    }
  }

  /** The CA certificates upstream TLS trusts, when extra ones were configured (undefined: the public roots). */
  get trustedCa(): readonly string[] | undefined {
    return this.ca;
  }

  get mode(): 'direct' | 'upstream-proxy' {
    return this.proxy ? 'upstream-proxy' : 'direct';
  }

  dispatcherFor(scheme: string, host: string, addr: ResolvedAddress, port: number): Dispatcher {
    if (this.proxy) return this.proxy;
    const key = `${scheme}//${host}@${addr.address}:${port}`;
    let pool = this.pools.get(key);
    if (pool) {
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
        ...(scheme === 'https:' ? { servername: host, ...(this.ca ? { ca: this.ca } : {}) } : {}),
      },
    });
    this.pools.set(key, pool);
    if (this.pools.size > (this.opts.maxPools ?? 256)) {
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
    await this.proxy?.close();
  }
}
