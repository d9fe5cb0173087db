// The `fetch` the MCP SDK's transports are given: every request goes to the egress
// proxy (the orchestrator has no other way out), labelled `x-talon-mcp: <server>` so
// egress treats it as the principal `mcp:<server>` — that server's allowlist, and only
// the secret names its headers use, filled for its host. The SDK never sees a value:
// the headers it sends carry `{{secret:NAME}}` placeholders.
import { Readable } from 'node:stream';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { MCP_HEADER } from '@talon/kit/contracts';
import type { EgressClient } from '@talon/kit/egress';

const NULL_BODY = new Set([101, 103, 204, 205, 304]);

function bodyOf(body: RequestInit['body']): string | Uint8Array | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  throw new TypeError('the MCP transport sent a request body of an unsupported type');
}

/** Response headers as undici gives them, as Fetch headers. Pure. */
export function fetchHeaders(raw: Record<string, string | string[] | undefined>): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) h.append(k, one);
  }
  return h;
}

export function egressFetch(
  egress: Pick<EgressClient, 'request'>,
  o: {
    server: string;
    /** The Talon user a tool call is made for (egress records it); none for listings. */
    user?: string;
    /** Bound on waiting for response headers, and on silence within a response body. */
    timeoutMs: number;
    /**
     * Streamable HTTP: answer the optional GET event stream (server-initiated messages) with
     * 405 here, as a server without one does. A session lasts one operation, so nothing would
     * listen on it; it would only cost a request. SSE (older servers) needs its GET: keep it.
     */
    noEventStream?: boolean;
  },
): FetchLike {
  return async (input, init) => {
    if (o.noEventStream && (init?.method ?? 'GET') === 'GET') return new Response(null, { status: 405 });
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => {
      headers[k] = v;
    });
    headers[MCP_HEADER] = o.server;
    const res = await egress.request({
      method: init?.method ?? 'GET',
      url: typeof input === 'string' ? input : input.href,
      headers,
      body: bodyOf(init?.body),
      ...(init?.signal ? { signal: init.signal } : {}),
      ...(o.user ? { user: o.user } : {}),
      headersTimeoutMs: o.timeoutMs,
      bodyTimeoutMs: o.timeoutMs,
    });
    if (NULL_BODY.has(res.status)) {
      await res.body.dump().catch(() => undefined);
      return new Response(null, { status: res.status, headers: fetchHeaders(res.headers) });
    }
    return new Response(Readable.toWeb(res.body) as ReadableStream<Uint8Array>, { status: res.status, headers: fetchHeaders(res.headers) });
  };
}
