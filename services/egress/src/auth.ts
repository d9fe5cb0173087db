// Who is calling egress: the SPIFFE identity of the client certificate, or — for
// tools that cannot present one — a per-principal proxy credential
// (Proxy-Authorization: Basic base64(principal:password)); only SHA-256 hashes of
// the passwords are kept, in a file the CLI writes.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { identityFromSan } from '@talon/kit/identity';

export const PRINCIPAL = /^[a-z0-9][a-z0-9:@._-]{0,127}$/;

export class ProxyCredentials {
  private readonly file: string | undefined;
  private cache: { mtimeMs: number; hashes: Map<string, Buffer> } | undefined;

  constructor(file: string | undefined) {
    this.file = file;
  }

  private load(): Map<string, Buffer> {
    if (!this.file) return new Map();
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.file).mtimeMs;
    } catch {
      return new Map();
    }
    if (this.cache?.mtimeMs === mtimeMs) return this.cache.hashes;
    const doc = JSON.parse(readFileSync(this.file, 'utf8')) as { credentials?: Record<string, string> };
    const hashes = new Map<string, Buffer>();
    for (const [p, h] of Object.entries(doc.credentials ?? {}))
      if (PRINCIPAL.test(p) && /^[0-9a-f]{64}$/.test(h)) hashes.set(p, Buffer.from(h, 'hex'));
    this.cache = { mtimeMs, hashes };
    return hashes;
  }

  /** Principal for a Proxy-Authorization header, or undefined. Constant-time compare. */
  verify(header: string | undefined): string | undefined {
    if (!header) return undefined;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m) return undefined;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return undefined;
    const principal = decoded.slice(0, colon);
    const expected = this.load().get(principal);
    const actual = createHash('sha256')
      .update(decoded.slice(colon + 1))
      .digest();
    if (!expected) {
      timingSafeEqual(actual, actual);
      return undefined;
    }
    return timingSafeEqual(expected, actual) ? principal : undefined;
  }
}

/** Certificate identity per connection: parsing the peer certificate is costly, and it cannot change on a TLS connection. */
const certIdentity = new WeakMap<object, string | null>();

/** The caller's principal: certificate identity first, proxy credential second. */
export function principalOf(
  req: IncomingMessage,
  creds: ProxyCredentials,
): { principal: string; method: 'mtls' | 'credential' } | undefined {
  const sock = req.socket as Partial<TLSSocket>;
  if (sock.authorized && typeof sock.getPeerCertificate === 'function') {
    let id = certIdentity.get(sock);
    if (id === undefined) {
      id = identityFromSan(sock.getPeerCertificate().subjectaltname) ?? null;
      certIdentity.set(sock, id);
    }
    if (id) return { principal: id, method: 'mtls' };
  }
  const p = creds.verify(req.headers['proxy-authorization']);
  return p ? { principal: p, method: 'credential' } : undefined;
}
