// A fake Discord Gateway (API v10, JSON) on loopback, speaking the real protocol: HELLO,
// IDENTIFY (the token checked, 4004 otherwise), READY with a session and a resume URL,
// heartbeats ACKed, RESUME replaying every dispatch after the client's sequence, and
// MESSAGE_CREATE dispatches queued by the test. Dispatches made while no client is
// connected wait in the session's history, as Discord keeps them for a resume.
import { once } from 'node:events';
import WebSocket, { WebSocketServer } from 'ws';

export interface FakeDiscordMessage {
  id: string;
  channelId: string;
  authorId: string;
  content: string;
  bot?: boolean;
}

export interface FakeDiscordGateway {
  /** ws://127.0.0.1:<port> */
  url: string;
  port: number;
  botId: string;
  /** Tokens IDENTIFY and RESUME carried, in order. */
  identifies: string[];
  resumes: Array<{ token: string; sessionId: string; seq: number }>;
  connections: number;
  /** Queues a MESSAGE_CREATE (sent at once when a client is connected). */
  message(m: FakeDiscordMessage): void;
  /** Drops the current connection without a close frame (a network failure). */
  drop(): void;
  /** Sends op 7 RECONNECT. */
  askReconnect(): void;
  /** Resolves once a client is connected and identified or resumed, `n` times in all. */
  ready(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFakeDiscordGateway(opts: { token: string; heartbeatMs?: number }): Promise<FakeDiscordGateway> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const port = (wss.address() as { port: number }).port;
  const url = `ws://127.0.0.1:${port}`;
  const botId = '100000000000000001';
  const sessionId = `session-${port}`;
  const history: Array<{ s: number; t: string; d: unknown }> = [];
  let seq = 0;
  let current: WebSocket | undefined;
  let readies = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const wake = () => {
    for (const w of [...waiters])
      if (readies >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
  };
  const dispatch = (t: string, d: unknown) => {
    const p = { s: ++seq, t, d };
    history.push(p);
    if (current?.readyState === WebSocket.OPEN) current.send(JSON.stringify({ op: 0, ...p }));
  };

  const fake: FakeDiscordGateway = {
    url,
    port,
    botId,
    identifies: [],
    resumes: [],
    connections: 0,
    message(m) {
      dispatch('MESSAGE_CREATE', {
        id: m.id,
        channel_id: m.channelId,
        type: 0,
        content: m.content,
        author: { id: m.authorId, username: `user${m.authorId.slice(-4)}`, ...(m.bot ? { bot: true } : {}) },
      });
    },
    drop() {
      current?.terminate();
    },
    askReconnect() {
      current?.send(JSON.stringify({ op: 7, d: null }));
    },
    ready(n) {
      return new Promise((resolve) => {
        waiters.push({ n, resolve });
        wake();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };

  wss.on('connection', (ws) => {
    fake.connections += 1;
    current = ws;
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: opts.heartbeatMs ?? 45_000 } }));
    ws.on('message', (data) => {
      let p: { op?: number; d?: Record<string, unknown> };
      try {
        p = JSON.parse(String(data)) as typeof p;
      } catch {
        ws.close(4002, 'decode error');
        return;
      }
      if (p.op === 1) ws.send(JSON.stringify({ op: 11 }));
      else if (p.op === 2) {
        const token = String(p.d?.token ?? '');
        fake.identifies.push(token);
        if (token !== opts.token) return ws.close(4004, 'Authentication failed.');
        dispatch('READY', { v: 10, session_id: sessionId, resume_gateway_url: url, user: { id: botId, username: 'talon', bot: true } });
        readies += 1;
        wake();
      } else if (p.op === 6) {
        const token = String(p.d?.token ?? '');
        const s = Number(p.d?.seq ?? -1);
        fake.resumes.push({ token, sessionId: String(p.d?.session_id ?? ''), seq: s });
        if (token !== opts.token) return ws.close(4004, 'Authentication failed.');
        if (p.d?.session_id !== sessionId) return ws.send(JSON.stringify({ op: 9, d: false }));
        for (const h of history) if (h.s > s) ws.send(JSON.stringify({ op: 0, ...h }));
        dispatch('RESUMED', {});
        readies += 1;
        wake();
      }
    });
    ws.on('close', () => {
      if (current === ws) current = undefined;
    });
  });
  return fake;
}
