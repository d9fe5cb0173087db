// A fake LLM provider for tests: a real HTTP server on loopback speaking the
// OpenAI Chat Completions and Anthropic Messages wire formats (JSON and SSE),
// including scripted tool calls, and an OpenAI-compatible /embeddings endpoint.
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
  /** When it returns a promise, the answer waits until it settles (a test releases the held response). */
  hold?: (req: RecordedLlmRequest, index: number) => Promise<void> | undefined;
  /** HTTP status to answer with instead of a completion. */
  status?: (req: RecordedLlmRequest, index: number) => number | undefined;
  /** Scripted answer (text and/or tool calls); wins over `reply` when it returns something. */
  respond?: (req: RecordedLlmRequest, index: number) => FakeLlmResponse | undefined;
  /** HTTP status for /embeddings requests (default: 200 with vectors). */
  embeddingsStatus?: (req: RecordedLlmRequest, index: number) => number | undefined;
}

export interface FakeToolCall {
  id?: string;
  name: string;
  /** Arguments object (sent as JSON) or raw argument text. */
  arguments: unknown;
}

export interface FakeLlmResponse {
  text?: string;
  toolCalls?: FakeToolCall[];
}

export interface FakeLlm {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedLlmRequest[];
  /** Requests to /embeddings (kept apart so completion counts stay meaningful). */
  readonly embeddingRequests: RecordedLlmRequest[];
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

/** Every message text the model received in a request (system, messages, tool results), OpenAI or Anthropic shaped. */
export function receivedTexts(req: RecordedLlmRequest): Array<{ role: string; text: string }> {
  const out: Array<{ role: string; text: string }> = [];
  const sys = req.body.system;
  if (typeof sys === 'string') out.push({ role: 'system', text: sys });
  for (const m of (req.body.messages as Array<{ role: string; content: unknown }>) ?? []) {
    if (typeof m.content === 'string') out.push({ role: m.role, text: m.content });
    else if (Array.isArray(m.content)) {
      for (const b of m.content as Array<{ type?: string; text?: string; content?: unknown }>) {
        if (b.type === 'text') out.push({ role: m.role, text: String(b.text ?? '') });
        if (b.type === 'tool_result')
          out.push({ role: 'tool', text: typeof b.content === 'string' ? b.content : JSON.stringify(b.content) });
      }
    }
  }
  return out;
}

/** The tools a request offered the model (OpenAI `tools[].function`, Anthropic `tools[]`), normalised. */
export function offeredTools(req: RecordedLlmRequest): Array<{ name: string; description: string; parameters: unknown }> {
  const tools = (req.body.tools as Array<Record<string, unknown>> | undefined) ?? [];
  return tools.map((t) => {
    const f = (t.function as Record<string, unknown> | undefined) ?? t;
    return { name: String(f.name ?? ''), description: String(f.description ?? ''), parameters: f.parameters ?? f.input_schema };
  });
}

/** The tool results a request carried back to the model, in order (either wire format). */
export function toolResults(req: RecordedLlmRequest): string[] {
  return receivedTexts(req)
    .filter((m) => m.role === 'tool')
    .map((m) => m.text);
}

/** Deterministic bag-of-words vector (signed feature hashing, unit length): similar wording, similar vectors. */
export function fakeEmbedding(text: string, dim: number): number[] {
  const v = new Array<number>(dim).fill(0);
  for (const w of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    let h = 0x811c9dc5;
    for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 0x01000193);
    h >>>= 0;
    v[h % dim] = v[h % dim]! + (h & 0x80000000 ? -1 : 1);
  }
  const n = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  return n > 0 ? v.map((x) => x / n) : v;
}

function jsonOrEmpty(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return {};
  }
}

function argText(a: unknown): string {
  return typeof a === 'string' ? a : JSON.stringify(a ?? {});
}

/** Splits text into small deltas so streaming is exercised. */
function deltas(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 4) out.push(text.slice(i, i + 4));
  return out.length > 0 ? out : [''];
}

export async function startFakeLlm(behaviour: FakeLlmBehaviour = {}, port = 0): Promise<FakeLlm> {
  const requests: RecordedLlmRequest[] = [];
  const embeddingRequests: RecordedLlmRequest[] = [];
  const held: ServerResponse[] = [];
  const fake = { requests, embeddingRequests, behaviour } as {
    requests: RecordedLlmRequest[];
    embeddingRequests: RecordedLlmRequest[];
    behaviour: FakeLlmBehaviour;
  };
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
    if ((req.url ?? '').endsWith('/embeddings')) {
      const eIndex = embeddingRequests.push(rec) - 1;
      const eStatus = fake.behaviour.embeddingsStatus?.(rec, eIndex);
      if (eStatus && eStatus >= 400) {
        res.writeHead(eStatus, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `fake error ${eStatus}` } }));
        return;
      }
      const input = Array.isArray(body.input) ? (body.input as unknown[]).map(String) : [String(body.input ?? '')];
      const dim = typeof body.dimensions === 'number' ? body.dimensions : 64;
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          object: 'list',
          model: body.model,
          data: input.map((t, i) => ({ object: 'embedding', index: i, embedding: fakeEmbedding(t, dim) })),
          usage: { prompt_tokens: input.length, total_tokens: input.length },
        }),
      );
      return;
    }
    const index = requests.push(rec) - 1;
    const b = fake.behaviour;
    if (b.hang?.(rec, index)) {
      held.push(res);
      return;
    }
    const gate = b.hold?.(rec, index);
    if (gate) await gate;
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    const status = b.status?.(rec, index);
    if (status && status >= 400) {
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { message: `fake error ${status}`, type: 'fake' } }));
      return;
    }
    const scripted = b.respond?.(rec, index);
    const text = scripted ? (scripted.text ?? '') : (b.reply ?? defaultReply)(rec);
    const calls = (scripted?.toolCalls ?? []).map((c, i) => ({
      id: c.id ?? `call_fake_${index}_${i}`,
      name: c.name,
      args: argText(c.arguments),
    }));
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
        calls.forEach((c, i) => {
          ev('content_block_start', { index: i + 1, content_block: { type: 'tool_use', id: c.id, name: c.name, input: {} } });
          for (const d of deltas(c.args)) ev('content_block_delta', { index: i + 1, delta: { type: 'input_json_delta', partial_json: d } });
          ev('content_block_stop', { index: i + 1 });
        });
        ev('message_delta', { delta: { stop_reason: calls.length > 0 ? 'tool_use' : 'end_turn' }, usage: { output_tokens: 7 } });
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
      if (text !== '' || calls.length === 0) for (const d of deltas(text)) chunk({ content: d }, null);
      calls.forEach((c, i) => {
        chunk({ tool_calls: [{ index: i, id: c.id, type: 'function', function: { name: c.name, arguments: '' } }] }, null);
        for (const d of deltas(c.args)) chunk({ tool_calls: [{ index: i, function: { arguments: d } }] }, null);
      });
      chunk({}, calls.length > 0 ? 'tool_calls' : 'stop');
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
          content: [
            ...(text !== '' || calls.length === 0 ? [{ type: 'text', text }] : []),
            ...calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.name, input: jsonOrEmpty(c.args) })),
          ],
          stop_reason: calls.length > 0 ? 'tool_use' : 'end_turn',
          usage: { input_tokens: 5, output_tokens: 7 },
        }
      : {
          id: `chatcmpl-fake${index}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [
            {
              index: 0,
              message: {
                role: 'assistant',
                content: calls.length > 0 && text === '' ? null : text,
                ...(calls.length > 0
                  ? { tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })) }
                  : {}),
              },
              finish_reason: calls.length > 0 ? 'tool_calls' : 'stop',
            },
          ],
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
