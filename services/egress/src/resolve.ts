// Resolve once, check every address, hand back the checked address to connect to.
// The caller connects to exactly that IP (SNI and Host keep the name), so a DNS
// answer that changes between check and connect cannot redirect the request.
import { lookup as dnsLookup } from 'node:dns/promises';
import { TalonError } from '@talon/kit/errors';
import { classifyAddress, ipLiteralOfHost, looksNumeric } from './address.ts';
import { normalizeHost, privateAllowed } from './policy.ts';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type Lookup = (host: string) => Promise<ResolvedAddress[]>;

export const systemLookup: Lookup = async (host) => {
  const all = await dnsLookup(host, { all: true, verbatim: true });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export class DestinationRefused extends TalonError {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(reason === 'dns_failure' ? 'upstream_error' : 'private_address', message);
    this.name = 'DestinationRefused';
    this.reason = reason;
  }
}

export async function resolveDestination(
  hostname: string,
  port: number,
  opts: { allowPrivate: ReadonlyArray<{ host: string; port: number }>; lookup: Lookup },
): Promise<ResolvedAddress> {
  const host = normalizeHost(hostname);
  const exempt = privateAllowed(opts.allowPrivate, host, port);
  const literal = ipLiteralOfHost(host);
  let candidates: ResolvedAddress[];
  if (host === 'localhost' || host.endsWith('.localhost')) {
    // RFC 6761: always loopback, whatever a resolver says.
    candidates = [{ address: '127.0.0.1', family: 4 }];
  } else if (literal) {
    candidates = [{ address: literal, family: literal.includes(':') ? 6 : 4 }];
  } else {
    if (looksNumeric(host))
      throw new DestinationRefused('ambiguous_numeric_host', `host ${host} looks numeric but is not a valid IP address`);
    try {
      candidates = await opts.lookup(host);
    } catch (err) {
      throw new DestinationRefused('dns_failure', `cannot resolve ${host}: ${(err as { code?: string }).code ?? 'lookup failed'}`);
    }
    if (candidates.length === 0) throw new DestinationRefused('dns_failure', `cannot resolve ${host}: no addresses`);
  }
  if (!exempt) {
    for (const c of candidates) {
      const v = classifyAddress(c.address);
      if (!v.public) {
        throw new DestinationRefused(
          v.reason,
          `${host}:${port} resolves to a non-public address (${v.reason}); egress refuses private, loopback, link-local and reserved destinations unless TALON_EGRESS_ALLOW_PRIVATE lists ${host}:${port}`,
        );
      }
    }
  }
  return candidates[0]!;
}
