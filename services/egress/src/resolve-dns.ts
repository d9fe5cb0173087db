// DNS for egress: the system resolver, or explicit servers (tests use a local
// DNS server to prove a flipping answer cannot redirect a request).
import { Resolver } from 'node:dns/promises';
import type { Lookup, ResolvedAddress } from './resolve.ts';
import { systemLookup } from './resolve.ts';

export function makeLookup(servers: readonly string[]): Lookup {
  if (servers.length === 0) return systemLookup;
  const r = new Resolver({ timeout: 2000, tries: 2 });
  r.setServers([...servers]);
  return async (host) => {
    const [a, aaaa] = await Promise.allSettled([r.resolve4(host), r.resolve6(host)]);
    const out: ResolvedAddress[] = [];
    if (a.status === 'fulfilled') for (const ip of a.value) out.push({ address: ip, family: 4 });
    if (aaaa.status === 'fulfilled') for (const ip of aaaa.value) out.push({ address: ip, family: 6 });
    if (out.length === 0) {
      const err = (a.status === 'rejected' ? a.reason : aaaa.status === 'rejected' ? aaaa.reason : new Error('no addresses')) as Error;
      throw err;
    }
    return out;
  };
}
