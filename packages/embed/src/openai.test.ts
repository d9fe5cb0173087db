import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { request } from 'undici';
import { OpenAiEmbedder, type HttpTransport } from './openai.ts';
import { EmbeddingError, dot } from './types.ts';

// A loopback stand-in for a third-party embeddings API.
interface Seen {
  headers: IncomingHttpHeaders;
  body: { model: string; input: string[]; dimensions?: number };
}

describe('OpenAI-compatible embedder', () => {
  let server: Server;
  let base: string;
  const seen: Seen[] = [];
  const users: Array<string | undefined> = [];
  let mode: 'ok' | 'reversed' | 'wrong-dim' | '429' | 'secret-error' = 'ok';

  // Direct loopback transport (in production this is EgressClient).
  const transport: HttpTransport = {
    async request(req) {
      users.push(req.user);
      const res = await request(req.url, {
        method: req.method as 'POST',
        headers: req.headers,
        body: req.body as string,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      return { status: res.statusCode, body: res.body };
    },
  };

  before(async () => {
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as Seen['body'];
        seen.push({ headers: req.headers, body });
        if (mode === '429') return void res.writeHead(429).end(JSON.stringify({ error: { message: 'slow down' } }));
        if (mode === 'secret-error')
          return void res.writeHead(401).end(JSON.stringify({ error: { message: 'bad key Bearer sk-abcdefghijklmnopqrstuvwxyz' } }));
        const dim = mode === 'wrong-dim' ? 8 : 4;
        let data = body.input.map((t, index) => ({
          index,
          embedding: Array.from({ length: dim }, (_, j) => (j === index % dim ? 3 : t.length % 2)),
        }));
        if (mode === 'reversed') data = data.reverse();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data, model: body.model }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/v1`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('sends the key only as a placeholder egress fills in, batches, and normalises', async () => {
    mode = 'ok';
    seen.length = 0;
    const e = new OpenAiEmbedder({
      transport,
      baseUrl: base,
      model: 'text-embedding-3-small',
      dim: 4,
      apiKeySecret: 'embed_key',
      batchSize: 2,
    });
    assert.equal(e.local, false);
    const out = await e.embed(['a', 'bb', 'ccc']);
    assert.equal(out.length, 3);
    assert.equal(seen.length, 2, 'two batches of at most 2');
    assert.equal(seen[0]!.headers.authorization, 'Bearer {{secret:embed_key}}');
    assert.deepEqual(seen[0]!.body.input, ['a', 'bb']);
    assert.equal(seen[0]!.body.dimensions, 4, 'text-embedding-3 models are asked for the configured dimension');
    for (const v of out) assert.ok(Math.abs(dot(v, v) - 1) < 1e-5);
  });

  it('names the user it embeds for to egress only, never to the provider', async () => {
    mode = 'ok';
    seen.length = 0;
    users.length = 0;
    const e = new OpenAiEmbedder({ transport, baseUrl: base, model: 'm', dim: 4, apiKeySecret: undefined, batchSize: 1 });
    await e.embed(['a', 'b'], undefined, { user: 'alice' });
    await e.embed(['c']);
    assert.deepEqual(users, ['alice', 'alice', undefined]);
    assert.ok(!JSON.stringify(seen).includes('alice'));
  });

  it('orders vectors by index and omits auth for keyless servers', async () => {
    mode = 'reversed';
    seen.length = 0;
    const e = new OpenAiEmbedder({ transport, baseUrl: `${base}/`, model: 'nomic-embed-text', dim: 4, apiKeySecret: undefined });
    const [a, b] = await e.embed(['x', 'y']);
    assert.equal(seen[0]!.headers.authorization, undefined);
    assert.equal(seen[0]!.body.dimensions, undefined);
    assert.ok(a![0]! > a![1]!, 'vector 0 has its peak at index 0');
    assert.ok(b![1]! > b![0]!, 'vector 1 has its peak at index 1');
  });

  it('explains a dimension mismatch with the fix', async () => {
    mode = 'wrong-dim';
    const e = new OpenAiEmbedder({ transport, baseUrl: base, model: 'm', dim: 4, apiKeySecret: undefined });
    await assert.rejects(e.embed(['x']), (err: EmbeddingError) => /TALON_EMBEDDINGS_DIM=8/.test(err.message));
  });

  it('marks rate limits retryable and scrubs credentials from provider errors', async () => {
    mode = '429';
    const e = new OpenAiEmbedder({ transport, baseUrl: base, model: 'm', dim: 4, apiKeySecret: undefined });
    await assert.rejects(e.embed(['x']), (err: EmbeddingError) => err.retryable && err.code === 'upstream_error');
    mode = 'secret-error';
    await assert.rejects(e.embed(['x']), (err: EmbeddingError) => !err.retryable && !/sk-abcdef/.test(err.message));
  });
});
