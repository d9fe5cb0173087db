// A fake OpenTelemetry collector: a real HTTP server on loopback accepting
// OTLP/HTTP JSON trace exports (what @opentelemetry/exporter-trace-otlp-http sends).
import { createServer, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';

export interface CollectedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  attributes: Record<string, unknown>;
}

export interface FakeCollector {
  url: string;
  spans: CollectedSpan[];
  /** Every request body received, raw (to search for leaked secrets). */
  raw: string[];
  close(): Promise<void>;
}

function attrValue(v: Record<string, unknown>): unknown {
  return v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue ?? JSON.stringify(v);
}

export async function startFakeCollector(): Promise<FakeCollector> {
  const spans: CollectedSpan[] = [];
  const raw: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    let body = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
    const text = body.toString('utf8');
    raw.push(text);
    try {
      const doc = JSON.parse(text) as {
        resourceSpans?: Array<{
          resource?: { attributes?: Array<{ key: string; value: Record<string, unknown> }> };
          scopeSpans?: Array<{
            spans?: Array<{
              traceId: string;
              spanId: string;
              parentSpanId?: string;
              name: string;
              attributes?: Array<{ key: string; value: Record<string, unknown> }>;
            }>;
          }>;
        }>;
      };
      for (const rs of doc.resourceSpans ?? []) {
        const service = String(rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '');
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            spans.push({
              service,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? '',
              name: s.name,
              attributes: Object.fromEntries((s.attributes ?? []).map((a) => [a.key, attrValue(a.value)])),
            });
      }
    } catch {
      /* protobuf or junk: kept in raw only */
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    raw,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
