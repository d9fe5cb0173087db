// Builds an HTTP Archive (HAR 1.2) from egress audit decisions. Pure. Decisions
// carry headers as the caller sent them (placeholders, never secret values) and
// bodies by size only, so the archive holds no secret.
import type { EgressDecision } from '@talon/proto';

export interface Har {
  log: {
    version: '1.2';
    creator: { name: string; version: string };
    entries: HarEntry[];
  };
}

interface NV {
  name: string;
  value: string;
}

export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: {
    method: string;
    url: string;
    httpVersion: string;
    headers: NV[];
    queryString: NV[];
    cookies: [];
    headersSize: -1;
    bodySize: number;
  };
  response: {
    status: number;
    statusText: string;
    httpVersion: string;
    headers: NV[];
    cookies: [];
    content: { size: number; mimeType: string; comment: string };
    redirectURL: string;
    headersSize: -1;
    bodySize: number;
  };
  cache: Record<string, never>;
  timings: { send: number; wait: number; receive: number };
  serverIPAddress?: string;
  comment: string;
  _talon: {
    principal: string;
    allowed: boolean;
    reason: string;
    secrets: string[];
    findings: string[];
    via: string;
    redactions: number;
    traceId: string;
  };
}

export function decisionsToHar(decisions: readonly EgressDecision[], version = '0.1.0'): Har {
  const entries = decisions.map((d): HarEntry => {
    const defaultPort = d.scheme === 'https' ? 443 : 80;
    const hostPart = d.host.includes(':') ? `[${d.host}]` : d.host;
    const url = `${d.scheme || 'https'}://${hostPart}${d.port && d.port !== defaultPort ? `:${d.port}` : ''}${d.path || '/'}${d.query}`;
    let queryString: NV[] = [];
    try {
      queryString = [...new URLSearchParams(d.query)].map(([name, value]) => ({ name, value }));
    } catch {
      queryString = [];
    }
    const header = (name: string) => d.responseHeaders.find((h) => h.name === name)?.value ?? '';
    const wait = Math.min(d.waitMs, d.durationMs);
    return {
      startedDateTime: new Date(d.atMs - d.durationMs).toISOString(),
      time: d.durationMs,
      request: {
        method: d.method,
        url,
        httpVersion: 'HTTP/1.1',
        headers: d.requestHeaders.map((h) => ({ name: h.name, value: h.value })),
        queryString,
        cookies: [],
        headersSize: -1,
        bodySize: d.requestBodyBytes,
      },
      response: {
        status: d.status,
        statusText: d.allowed ? '' : d.reason,
        httpVersion: 'HTTP/1.1',
        headers: d.responseHeaders.map((h) => ({ name: h.name, value: h.value })),
        cookies: [],
        content: { size: d.responseBodyBytes, mimeType: header('content-type') || 'x-unknown', comment: 'bodies are not recorded' },
        redirectURL: header('location'),
        headersSize: -1,
        bodySize: d.responseBodyBytes,
      },
      cache: {},
      timings: { send: 0, wait, receive: Math.max(0, d.durationMs - wait) },
      ...(d.address ? { serverIPAddress: d.address } : {}),
      comment: d.allowed ? `allowed for ${d.principal}` : `refused for ${d.principal || 'unauthenticated caller'}: ${d.reason}`,
      _talon: {
        principal: d.principal,
        allowed: d.allowed,
        reason: d.reason,
        secrets: d.secrets,
        findings: d.findings,
        via: d.via,
        redactions: d.redactions,
        traceId: d.traceId,
      },
    };
  });
  return { log: { version: '1.2', creator: { name: 'talon-egress', version }, entries } };
}
