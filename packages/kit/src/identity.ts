// Workload identity: SPIFFE URIs (spiffe://talon/<name>) carried as URI SANs.
// The gRPC and proxy layers authorise callers by that URI, never by hostname.
import { X509Certificate as NodeX509 } from 'node:crypto';

export const TRUST_DOMAIN = 'talon';

export function spiffeId(name: string): string {
  return `spiffe://${TRUST_DOMAIN}/${name}`;
}

/**
 * Extracts URI SANs from Node's `subjectaltname` string. Node quotes entries that
 * contain separators (JSON string syntax), so a crafted SAN cannot inject a
 * second URI through a comma.
 */
export function parseSubjectAltName(san: string | undefined): { uris: string[]; dns: string[] } {
  const uris: string[] = [];
  const dns: string[] = [];
  if (!san) return { uris, dns };
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    const type = san.slice(i, colon).trim();
    let j = colon + 1;
    let value: string;
    if (san[j] === '"') {
      // JSON-quoted value
      let k = j + 1;
      while (k < san.length && san[k] !== '"') k += san[k] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(san.slice(j, k + 1)) as string;
      } catch {
        value = '';
      }
      j = k + 1;
    } else {
      const comma = san.indexOf(', ', j);
      const end = comma < 0 ? san.length : comma;
      value = san.slice(j, end);
      j = end;
    }
    if (type === 'URI') uris.push(value);
    else if (type === 'DNS') dns.push(value);
    const next = san.indexOf(', ', j);
    if (next < 0) break;
    i = next + 2;
  }
  return { uris, dns };
}

/** Returns the workload name when the SAN list holds exactly one spiffe://talon/<name> URI. */
export function identityFromSan(san: string | undefined): string | undefined {
  const spiffe = parseSubjectAltName(san).uris.filter((u) => u.startsWith('spiffe://'));
  if (spiffe.length !== 1) return undefined;
  const m = /^spiffe:\/\/([a-z0-9.-]+)\/([a-z0-9][a-z0-9:@._-]{0,127})$/.exec(spiffe[0] ?? '');
  if (!m || m[1] !== TRUST_DOMAIN) return undefined;
  return m[2];
}

/** Identity of a PEM certificate (used by tests and the CLI to show who a cert names). */
export function identityOfCertPem(pem: string): string | undefined {
  return identityFromSan(new NodeX509(pem).subjectAltName);
}
