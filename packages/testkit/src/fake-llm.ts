// A fake LLM provider for tests: a real HTTP server on loopback speaking the
// OpenAI Chat Completions and Anthropic Messages wire formats (JSON and SSE).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface RecordedLlmRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  receivedAt: number;
}

export interface FakeLlmBehaviour {
  /** Text of the reply for a request (default: echoes the last user message). */
  reply?: (req: RecordedLlmRequest) => string;
  /** Delay before answering. */
  delayMs?: number;
  /** When it returns true, the request is held open and never answered (until close). */
  hang?: (req: RecordedLlmRequest, index: number) => boolean;
  /** HTTP status to answer with instead of a completion. */
  status?: (req: RecordedLlmRequest, index: number) => number | undefined;
}

export interface FakeLlm {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedLlmRequest[];
  behaviour: FakeLlmBehaviour;
  close(): Promise<void>;
}

function lastUser(body: Record<string, unknown>): string {
  const msgs = (body.messages as Array<{ role: string; content: unknown }>) ?? [];
  for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]?.role === 'user') return String(msgs[i]?.content ?? '');
  return '';
}

export function defaultReply(req: RecordedLlmRequest): string {
  return `echo: ${lastUser(req.body)}`;
}

/** Splits text into small deltas so streaming is exercised. */
function deltas(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 4) out.push(text.slice(i, i + 4));
  return out.length > 0 ? out : [''];
}

export async function startFakeLlm(behaviour: FakeLlmBehaviour = {}, port = 0): Promise<FakeLlm> {
  const requests: RecordedLlmRequest[] = [];
  const held: ServerResponse[] = [];
  const fake = { requests, behaviour } as { requests: RecordedLlmRequest[]; behaviour: FakeLlmBehaviour };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'bad json' } }));
      return;
    }
    const rec: RecordedLlmRequest = { path: req.url ?? '', headers: req.headers, body, receivedAt: Date.now() };
    const index = requests.push(rec) - 1;
    const b = fake.behaviour;
    if (b.hang?.(rec, index)) {
      held.push(res);
      return;
    }
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    const status = b.status?.(rec, index);
    if (status && status >= 400) {
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { message: `fake error ${status}`, type: 'fake' } }));
      return;
    }
    const text = (b.reply ?? defaultReply)(rec);
    const model = String(body.model ?? 'fake-model');
    const anthropic = (req.url ?? '').endsWith('/messages');
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      if (anthropic) {
        const ev = (type: string, data: unknown) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
        ev('message_start', { message: { id: 'msg_fake', model, usage: { input_tokens: 5, output_tokens: 0 } } });
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
        for (const d of deltas(text)) ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: d } });
        ev('content_block_stop', { index: 0 });
        ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } });
        ev('message_stop', {});
        res.end();
        return;
      }
      const id = `chatcmpl-fake${index}`;
      const created = Math.floor(Date.now() / 1000);
      const chunk = (delta: object, finish: string | null) =>
        res.write(
          `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`,
        );
      chunk({ role: 'assistant', content: '' }, null);
      for (const d of deltas(text)) chunk({ content: d }, null);
      chunk({}, 'stop');
      res.write(
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
      return;
    }
    const json = anthropic
      ? {
          id: 'msg_fake',
          type: 'message',
          role: 'assistant',
          model,
          content: [{ type: 'text', text }],
          stop_reason: 'end_turn',
          usage: { input_tokens: 5, output_tokens: 7 },
        }
      : {
          id: `chatcmpl-fake${index}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
        };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(json));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  return Object.assign(fake, {
    url: `http://127.0.0.1:${actual}/v1`,
    port: actual,
    async close() {
      for (const r of held) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}
