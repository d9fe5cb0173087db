// A fake Discord Gateway (API v10, JSON) on loopback, speaking the real protocol: HELLO,
// IDENTIFY (the token checked, 4004 otherwise), READY with a session and a resume URL,
// heartbeats ACKed, RESUME replaying every dispatch after the client's sequence, and
// MESSAGE_CREATE dispatches queued by the test. Each IDENTIFY starts a new session (its own
// id and sequence numbers from 1; the previous session can no longer be resumed). Dispatches
// made while no client is connected wait in the session's history, as Discord keeps them
// for a resume: a RESUME with the session's id replays every dispatch after the given
// sequence, then RESUMED. A RESUME of an unknown or expired session gets INVALID_SESSION
// (d=false); a message dispatched while no session exists (expired, never identified) is lost.
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
  /** The current session's id (undefined before the first IDENTIFY or after expireSession). */
  readonly sessionId: string | undefined;
  /** The current session's last sequence number. */
  readonly seq: number;
  /** Discord timed the session out: a RESUME of it gets INVALID_SESSION, and messages until the next IDENTIFY are lost. */
  expireSession(): void;
  /** Drops the current connection without a close frame (a network failure). */
  drop(): void;
  /** Sends op 7 RECONNECT. */
  askReconnect(): void;
  /** Connections identified or resumed so far. */
  readonly readies: number;
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
  let sessions = 0;
  let sessionId: string | undefined;
  let history: Array<{ s: number; t: string; d: unknown }> = [];
  let seq = 0;
  let current: WebSocket | undefined;
  /** The connection identified or resumed into the session: dispatches go there (none before READY). */
  let live: WebSocket | undefined;
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
    // No session: nobody receives it, and no later RESUME can replay it.
    if (sessionId === undefined) return;
    const p = { s: ++seq, t, d };
    history.push(p);
    if (live?.readyState === WebSocket.OPEN) live.send(JSON.stringify({ op: 0, ...p }));
  };

  const fake: FakeDiscordGateway = {
    url,
    port,
    botId,
    identifies: [],
    resumes: [],
    connections: 0,
    get sessionId() {
      return sessionId;
    },
    get seq() {
      return seq;
    },
    get readies() {
      return readies;
    },
    expireSession() {
      live = undefined;
      sessionId = undefined;
      history = [];
      seq = 0;
    },
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
        sessionId = `session-${port}-${++sessions}`;
        history = [];
        seq = 0;
        live = ws;
        dispatch('READY', { v: 10, session_id: sessionId, resume_gateway_url: url, user: { id: botId, username: 'talon', bot: true } });
        readies += 1;
        wake();
      } else if (p.op === 6) {
        const token = String(p.d?.token ?? '');
        const s = Number(p.d?.seq ?? -1);
        fake.resumes.push({ token, sessionId: String(p.d?.session_id ?? ''), seq: s });
        if (token !== opts.token) return ws.close(4004, 'Authentication failed.');
        if (sessionId === undefined || p.d?.session_id !== sessionId || !(s >= 0 && s <= seq))
          return ws.send(JSON.stringify({ op: 9, d: false }));
        for (const h of history) if (h.s > s) ws.send(JSON.stringify({ op: 0, ...h }));
        live = ws;
        dispatch('RESUMED', {});
        readies += 1;
        wake();
      }
    });
    ws.on('close', () => {
      if (current === ws) current = undefined;
      if (live === ws) live = undefined;
    });
  });
  return fake;
}
