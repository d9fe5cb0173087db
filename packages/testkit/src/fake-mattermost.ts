// A fake Mattermost server (API v4) on loopback, speaking the real wire format for what
// Talon uses: GET /api/v4/users/me, POST /api/v4/posts (recorded, 201 with the post) and the
// WebSocket API at /api/v4/websocket, each checking `Authorization: Bearer <token>` as the
// real server does (401 otherwise, also for the upgrade). A connection gets the `hello`
// event, then `posted` events (data.post a JSON string, seq counting per connection), and
// answers the `ping` action with seq_reply. Like the real server it broadcasts every post,
// the bot's own replies too, and replays nothing to a client that reconnects; what it missed
// is there by GET /api/v4/channels/{id}/posts?since= ({order, posts}, posts changed since).
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { randomChars } from './random-chars.ts';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

export interface FakeMattermostPost {
  id: string;
  create_at: number;
  user_id: string;
  channel_id: string;
  root_id: string;
  message: string;
  type: string;
  props: Record<string, unknown>;
  pending_post_id?: string;
}

export interface FakeMattermost {
  /** http://127.0.0.1:<port> (TALON_MATTERMOST_URL). */
  url: string;
  port: number;
  token: string;
  botUserId: string;
  botUsername: string;
  /** Every post made through POST /api/v4/posts (the bot's replies). */
  replies: FakeMattermostPost[];
  /** Authorization headers of the WebSocket upgrades, in order (what egress filled in). */
  upgrades: string[];
  /** Upgrades accepted (connections that got `hello`). */
  connections: number;
  /** ping actions answered. */
  pings: number;
  /** While true, ping actions get no answer (a server that hangs behind a live TCP connection). */
  silent: boolean;
  /** While true, WebSocket upgrades are refused with 503 (the server is restarting). */
  refuseUpgrades: boolean;
  /** GET /api/v4/channels/{id}/posts calls, as `<channel id>?since=<ms>`. */
  catchUps: string[];
  /** A user's post, broadcast as a `posted` event on the open connection (lost when none is). Returns its id. */
  post(p: {
    userId: string;
    channelId: string;
    message: string;
    channelType?: 'O' | 'P' | 'D' | 'G';
    rootId?: string;
    type?: string;
  }): string;
  /** Drops the current connection without a close frame (a network failure). */
  drop(): void;
  close(): Promise<void>;
}

/** A Mattermost id: 26 characters of lower-case base32. */
export function mattermostId(): string {
  return randomChars(26, 'abcdefghijkmnopqrstuwxyz13456789');
}

export async function startFakeMattermost(opts: { token?: string } = {}): Promise<FakeMattermost> {
  const token = opts.token ?? `mm${randomBytes(13).toString('hex')}`;
  const botUserId = mattermostId();
  const sockets = new Set<Socket>();
  const wss = new WebSocketServer({ noServer: true });
  let current: { ws: WebSocket; seq: number } | undefined;
  const all: FakeMattermostPost[] = [];
  const authorized = (req: IncomingMessage) => req.headers.authorization === `Bearer ${token}`;
  const unauthorized = {
    id: 'api.context.session_expired.app_error',
    message: 'Invalid or expired session, please login again.',
    detailed_error: '',
    request_id: mattermostId(),
    status_code: 401,
  };

  const broadcast = (p: FakeMattermostPost, channelType: string, senderName: string) => {
    const c = current;
    if (c?.ws.readyState !== WebSocket.OPEN) return;
    c.seq += 1;
    c.ws.send(
      JSON.stringify({
        event: 'posted',
        data: {
          channel_display_name: 'Town Square',
          channel_name: 'town-square',
          channel_type: channelType,
          post: JSON.stringify(p),
          sender_name: senderName,
          team_id: 'teamteamteamteamteamteamte',
          set_online: true,
        },
        broadcast: { omit_users: null, user_id: '', channel_id: p.channel_id, team_id: '', connection_id: '', omit_connection_id: '' },
        seq: c.seq,
      }),
    );
  };

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    req.on('end', () => {
      if (!authorized(req)) return send(res, 401, unauthorized);
      const since = /^\/api\/v4\/channels\/([a-z0-9]{26})\/posts\?since=(\d+)$/.exec(req.url ?? '');
      if (req.method === 'GET' && since) {
        fake.catchUps.push(`${since[1]}?since=${since[2]}`);
        const found = all.filter((p) => p.channel_id === since[1] && p.create_at > Number(since[2]));
        return send(res, 200, {
          order: found.map((p) => p.id).reverse(),
          posts: Object.fromEntries(found.map((p) => [p.id, p])),
          next_post_id: '',
          prev_post_id: '',
          has_next: false,
        });
      }
      if (req.method === 'GET' && req.url === '/api/v4/users/me')
        return send(res, 200, {
          id: botUserId,
          username: fake.botUsername,
          is_bot: true,
          roles: 'system_user',
          create_at: 1_700_000_000_000,
        });
      if (req.method === 'POST' && req.url === '/api/v4/posts') {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          return send(res, 400, {
            id: 'api.context.invalid_body_param.app_error',
            message: 'Invalid or missing post in request body.',
            status_code: 400,
          });
        }
        if (typeof body.channel_id !== 'string' || typeof body.message !== 'string')
          return send(res, 400, { id: 'model.post.is_valid.channel_id.app_error', message: 'Invalid channel id.', status_code: 400 });
        const p: FakeMattermostPost = {
          id: mattermostId(),
          create_at: Date.now(),
          user_id: botUserId,
          channel_id: body.channel_id,
          root_id: typeof body.root_id === 'string' ? body.root_id : '',
          message: body.message,
          type: '',
          props: typeof body.props === 'object' && body.props !== null ? (body.props as Record<string, unknown>) : {},
          ...(typeof body.pending_post_id === 'string' ? { pending_post_id: body.pending_post_id } : {}),
        };
        fake.replies.push(p);
        all.push(p);
        send(res, 201, p);
        // The real server broadcasts the bot's own post to the bot's connection too.
        broadcast(p, 'O', `@${fake.botUsername}`);
        return;
      }
      send(res, 404, { id: 'api.context.404.app_error', message: 'Sorry, we could not find the page.', status_code: 404 });
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (req.url !== '/api/v4/websocket') return socket.destroy();
    fake.upgrades.push(String(req.headers.authorization ?? ''));
    if (fake.refuseUpgrades) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    if (!authorized(req)) {
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify(unauthorized)}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = { ws, seq: 0 };
      current = conn;
      fake.connections += 1;
      ws.send(
        JSON.stringify({
          event: 'hello',
          data: { connection_id: mattermostId(), server_version: '9.11.0.0' },
          broadcast: { omit_users: null, user_id: botUserId, channel_id: '', team_id: '' },
          seq: 0,
        }),
      );
      ws.on('message', (data) => {
        let m: { seq?: unknown; action?: unknown };
        try {
          m = JSON.parse(String(data)) as typeof m;
        } catch {
          return;
        }
        if (m.action === 'ping' && !fake.silent) {
          fake.pings += 1;
          ws.send(JSON.stringify({ status: 'OK', seq_reply: m.seq, data: { text: 'pong', version: '9.11.0', server_time: Date.now() } }));
        }
      });
      ws.on('close', () => {
        if (current === conn) current = undefined;
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;

  const fake: FakeMattermost = {
    url: `http://127.0.0.1:${port}`,
    port,
    token,
    botUserId,
    botUsername: 'talon',
    replies: [],
    upgrades: [],
    connections: 0,
    pings: 0,
    refuseUpgrades: false,
    silent: false,
    catchUps: [],
    post(p) {
      const post: FakeMattermostPost = {
        id: mattermostId(),
        create_at: Date.now(),
        user_id: p.userId,
        channel_id: p.channelId,
        root_id: p.rootId ?? '',
        message: p.message,
        type: p.type ?? '',
        props: {},
      };
      all.push(post);
      broadcast(post, p.channelType ?? 'O', '@sue');
      return post.id;
    },
    drop() {
      current?.ws.terminate();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        for (const s of sockets) s.destroy();
        wss.close();
        server.close(() => resolve());
      }),
  };
  return fake;
}
