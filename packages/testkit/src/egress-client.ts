// Test helpers for egress: send requests through the proxy as any identity, and
// run fake upstreams (HTTP and HTTPS with a test CA) that record what reached them.
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, type Dispatcher } from 'undici';
import { createCa, issueCert } from '@talon/kit/pki';

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export interface UpstreamTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A throwaway CA and a server certificate for localhost / 127.0.0.1 / the given names. */
export async function makeUpstreamTls(names: string[] = ['localhost', 'upstream.test']): Promise<UpstreamTls> {
  const ca = await createCa('Fake Upstream CA');
  const leaf = await issueCert(ca, { name: 'upstream', uri: null, dnsNames: names, ips: ['127.0.0.1'] });
  return { caPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem };
}

export interface FakeUpstream {
  url: string;
  port: number;
  seen: Seen[];
  connections: number;
  close(): Promise<void>;
  /** PEM of the CA that signed the HTTPS certificate (for EGRESS_UPSTREAM_CA_FILE). */
  caPem?: string;
}

export async function startUpstream(
  handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void = (_q, res) => res.end('ok'),
  opts: { https?: UpstreamTls } = {},
): Promise<FakeUpstream> {
  const seen: Seen[] = [];
  const state = { connections: 0 };
  const onReq = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    handler(req, res, body);
  };
  let server: Server;
  let caPem: string | undefined;
  if (opts.https) {
    server = createHttps({ key: opts.https.keyPem, cert: opts.https.certPem }, (q, s) => void onReq(q, s)) as unknown as Server;
    caPem = opts.https.caPem;
  } else {
    server = createHttp((q, s) => void onReq(q, s));
  }
  server.on('connection', () => (state.connections += 1));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `${opts.https ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    seen,
    get connections() {
      return state.connections;
    },
    caPem,
    async close() {
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A client of the egress proxy presenting `identity`'s certificate from TALON_HOME. */
export function egressAs(home: string, proxyPort: number, identity: string): Client {
  const pki = join(home, 'pki');
  return new Client(`https://127.0.0.1:${proxyPort}`, {
    connect: {
      ca: readFileSync(join(pki, 'ca.crt')),
      cert: readFileSync(join(pki, `${identity}.crt`)),
      key: readFileSync(join(pki, `${identity}.key`)),
      servername: 'egress',
    },
  });
}

export async function viaEgress(
  client: Client,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; headers: Dispatcher.ResponseData['headers']; text: string; json: any }> {
  const u = new URL(url);
  const res = await client.request({
    method: (init.method ?? 'GET') as 'GET',
    path: u.toString(),
    headers: { ...init.headers },
    body: init.body,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}
