// PostgreSQL wire protocol in front of PGlite for several client connections.
//
// PGlite is one backend session. Clients speak the extended query protocol
// (Parse, Bind, Describe, Execute, Sync), so messages of two connections must not
// interleave between a Parse and its Sync: the unnamed statement of one would be
// replaced by the other's ("bind message supplies 5 parameters, but prepared
// statement requires 7"). This server therefore runs each connection's messages
// in units that end at Sync, Query, Flush or Terminate, one unit at a time, and
// while a connection holds an open transaction only that connection's units run.
// (The upstream pglite-socket queues single messages, which interleaves them.)
//
// Prepared statements: PostgreSQL keeps named statements and portals per connection,
// PGlite has one session for all of them. Each connection's names are therefore
// prefixed with its own (`c<id>_`) in Parse, Bind, Describe, Execute and Close, so two
// clients that prepare the same name (a pooled driver does) each get their own, and a
// connection's statements are closed when it goes.
//
// LISTEN/NOTIFY: the one session delivers a notification in the output of the unit that
// committed it, i.e. to the notifier's connection. This server copies each
// NotificationResponse to the other connections that ran `LISTEN <channel>` as a simple
// query (tracked per connection), as PostgreSQL would deliver it (the vault's epoch
// listener relies on it, services/vault/src/epoch-listener.ts).
import { createServer, type Server, type Socket } from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import { listenFree } from '@talon/kit/ports';

const SSL_REQUEST = 80877103;
const CANCEL_REQUEST = 80877102;
const GSS_REQUEST = 80877104;
/** Message types that end a unit of work the client waits on. */
const UNIT_END = new Set(['S', 'Q', 'H', 'X']);

interface Unit {
  conn: Connection;
  bytes: Uint8Array;
  /** The server's own work for a connection that is gone (its output is dropped). */
  internal?: boolean;
}

class Connection {
  readonly id: number;
  readonly socket: Socket;
  buf: Buffer = Buffer.alloc(0);
  started = false;
  pending: Buffer[] = [];
  closed = false;
  /** Channels this connection LISTENs on (simple-query LISTEN / UNLISTEN). */
  readonly listening = new Set<string>();
  /** Prefix of this connection's statement and portal names in the shared session. */
  readonly prefix: Buffer;
  /** Named statements this connection prepared (as named in the session), closed when it goes. */
  readonly statements = new Set<string>();
  constructor(id: number, socket: Socket) {
    this.id = id;
    this.socket = socket;
    this.prefix = Buffer.from(`c${id}_`);
  }
}

export interface WireServerOptions {
  db: PGlite;
  host: string;
  port: number;
  maxConnections: number;
  onError?: (err: Error) => void;
  /** Told of every client unit PGlite ran and the milliseconds it took (statement profiling). */
  onUnit?: (bytes: Uint8Array, ms: number) => void;
}

export class PgliteWireServer {
  private readonly db: PGlite;
  private readonly host: string;
  private readonly port: number;
  private readonly maxConnections: number;
  private readonly onError: ((err: Error) => void) | undefined;
  private readonly onUnit: WireServerOptions['onUnit'];
  private server: Server | undefined;
  private readonly queue: Unit[] = [];
  private running = false;
  /** Connection whose transaction is open, if any. */
  private owner: Connection | undefined;
  private readonly conns = new Set<Connection>();
  private nextId = 1;
  private stopped = false;

  constructor(opts: WireServerOptions) {
    this.db = opts.db;
    this.host = opts.host;
    this.port = opts.port;
    this.maxConnections = opts.maxConnections;
    this.onError = opts.onError;
    this.onUnit = opts.onUnit;
  }

  async start(): Promise<number> {
    this.server = createServer((s) => this.accept(s));
    this.server.maxConnections = this.maxConnections;
    // A restart binds the port reported before: port 0 takes one outside the ephemeral range.
    return listenFree(this.server, this.host, this.port);
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const conn = new Connection(this.nextId++, socket);
    this.conns.add(conn);
    socket.on('data', (d: Buffer) => {
      conn.buf = conn.buf.length === 0 ? d : Buffer.concat([conn.buf, d]);
      try {
        this.parse(conn);
      } catch (err) {
        this.onError?.(err as Error);
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => void this.drop(conn));
  }

  private parse(conn: Connection): void {
    for (;;) {
      if (!conn.started) {
        if (conn.buf.length < 8) return;
        const len = conn.buf.readInt32BE(0);
        const code = conn.buf.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSS_REQUEST) {
          conn.buf = conn.buf.subarray(8);
          conn.socket.write('N');
          continue;
        }
        if (code === CANCEL_REQUEST) {
          // Not supported by a single-session backend; the client just waits.
          conn.buf = conn.buf.subarray(Math.min(len, conn.buf.length));
          conn.socket.end();
          return;
        }
        if (len < 8 || len > 10_000) throw new Error(`bad startup packet length ${len}`);
        if (conn.buf.length < len) return;
        const msg = conn.buf.subarray(0, len);
        conn.buf = conn.buf.subarray(len);
        conn.started = true;
        this.enqueue({ conn, bytes: new Uint8Array(msg) });
        continue;
      }
      if (conn.buf.length < 5) return;
      const type = String.fromCharCode(conn.buf[0]!);
      const len = conn.buf.readInt32BE(1);
      if (len < 4) throw new Error(`bad message length ${len}`);
      if (conn.buf.length < 1 + len) return;
      const msg = ownNames(conn, Buffer.from(conn.buf.subarray(0, 1 + len)));
      conn.buf = conn.buf.subarray(1 + len);
      conn.pending.push(msg);
      if (type === 'Q') trackListen(conn, msg);
      if (UNIT_END.has(type)) {
        const bytes = new Uint8Array(Buffer.concat(conn.pending));
        conn.pending = [];
        this.enqueue({ conn, bytes });
        if (type === 'X') {
          conn.closed = true;
          return;
        }
      }
    }
  }

  private enqueue(u: Unit): void {
    this.queue.push(u);
    void this.pump();
  }

  private next(): Unit | undefined {
    if (this.owner && this.db.isInTransaction()) {
      const i = this.queue.findIndex((u) => u.conn === this.owner);
      return i >= 0 ? this.queue.splice(i, 1)[0] : undefined;
    }
    this.owner = undefined;
    return this.queue.shift();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const u = this.next();
        if (!u) break;
        if (u.conn.socket.destroyed && !u.internal) continue;
        const notifications = new NotificationScanner();
        // The unit's output goes out in one write (PGlite hands it over in many small pieces).
        const out: Buffer[] = [];
        const started = performance.now();
        try {
          await this.db.runExclusive(() =>
            this.db.execProtocolRawStream(u.bytes, {
              onRawData: (data: Uint8Array) => {
                if (data.length === 0 || u.internal) return;
                const piece = Buffer.from(data);
                out.push(piece);
                notifications.feed(piece, (msg) => this.deliver(u.conn, msg));
              },
            }),
          );
        } catch (err) {
          this.onError?.(err as Error);
          u.conn.socket.destroy();
        }
        if (this.onUnit && !u.internal) this.onUnit(u.bytes, performance.now() - started);
        if (out.length > 0 && !u.conn.socket.destroyed) u.conn.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
        if (this.db.isInTransaction()) this.owner = u.conn;
        if (u.conn.closed && !u.internal) u.conn.socket.end();
      }
    } finally {
      this.running = false;
    }
  }

  /** Copies a NotificationResponse to every other connection listening on its channel. */
  private deliver(from: Connection, msg: Buffer): void {
    // Body: int32 sender pid, channel (C string), payload (C string).
    const end = msg.indexOf(0, 9);
    if (end < 0) return;
    const channel = msg.subarray(9, end).toString('utf8');
    for (const c of this.conns) if (c !== from && c.listening.has(channel) && !c.socket.destroyed) c.socket.write(msg);
  }

  /** A client that disconnects inside a transaction must not block everyone: roll it back. */
  private async drop(conn: Connection): Promise<void> {
    this.conns.delete(conn);
    if (this.stopped) return;
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.conn === conn) this.queue.splice(i, 1);
    if (this.owner === conn) {
      this.owner = undefined;
      if (this.db.isInTransaction()) {
        // exec() takes PGlite's own lock (wrapping it in runExclusive would deadlock).
        await this.db.exec('ROLLBACK').catch((err: unknown) => this.onError?.(err as Error));
      }
    }
    if (conn.statements.size > 0) {
      // Queued like any unit, so it never runs inside another connection's transaction.
      // Close (unlike DEALLOCATE) is no error for a statement whose Parse failed.
      const close = Buffer.concat([...[...conn.statements].map((n) => closeStatement(n)), SYNC]);
      conn.statements.clear();
      this.queue.push({ conn, bytes: new Uint8Array(close), internal: true });
    }
    void this.pump();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);

/** A Close of a named statement ('C', 'S', name). */
function closeStatement(name: string): Buffer {
  const n = Buffer.from(`${name}\0`);
  const head = Buffer.alloc(6);
  head.write('C', 0);
  head.writeInt32BE(4 + 1 + n.length, 1);
  head.write('S', 5);
  return Buffer.concat([head, n]);
}

/**
 * The message with the connection's statement and portal names prefixed (see the top of
 * this file): Parse names a statement, Bind a portal then a statement, Describe and
 * Close a statement or portal, Execute a portal. Unnamed ones ('') stay unnamed; other
 * messages pass unchanged.
 */
export function ownNames(conn: { prefix: Buffer; statements: Set<string> }, msg: Buffer): Buffer {
  const type = msg[0];
  // Offsets of the C strings holding names.
  let names: number[];
  switch (type) {
    case 0x50: // Parse
    case 0x45: // Execute
      names = [5];
      break;
    case 0x42: {
      // Bind: portal, then statement
      const end = msg.indexOf(0, 5);
      if (end < 0) return msg;
      names = [5, end + 1];
      break;
    }
    case 0x44: // Describe
    case 0x43: // Close
      names = [6];
      break;
    default:
      return msg;
  }
  if (names.every((at) => msg[at] === 0)) return msg;
  const parts: Buffer[] = [];
  let from = 0;
  for (const at of names) {
    if (at >= msg.length || msg[at] === 0) continue;
    parts.push(msg.subarray(from, at), conn.prefix);
    from = at;
  }
  parts.push(msg.subarray(from));
  const out = Buffer.concat(parts);
  out.writeInt32BE(out.length - 1, 1);
  if (type === 0x50) conn.statements.add(out.subarray(5, out.indexOf(0, 5)).toString('utf8'));
  // A closed statement need not be closed again when the connection goes.
  if (type === 0x43 && out[5] === 0x53) conn.statements.delete(out.subarray(6, out.indexOf(0, 6)).toString('utf8'));
  return out;
}

const LISTEN = /^\s*(listen|unlisten)\s+(\*|"((?:[^"]|"")+)"|([A-Za-z_][\w$]*))\s*;?\s*$/i;

/** Notes a simple-query LISTEN or UNLISTEN of one channel (other statements are not parsed). */
function trackListen(conn: Connection, msg: Buffer): void {
  const m = LISTEN.exec(msg.subarray(5, msg.length - 1).toString('utf8'));
  if (!m) return;
  const channel = m[3] !== undefined ? m[3].replaceAll('""', '"') : m[4]?.toLowerCase();
  if (m[1]!.toLowerCase() === 'listen') {
    if (channel !== undefined) conn.listening.add(channel);
  } else if (m[2] === '*') conn.listening.clear();
  else if (channel !== undefined) conn.listening.delete(channel);
}

/** Finds NotificationResponse ('A') messages in a backend output stream split at any byte. */
export class NotificationScanner {
  private header = Buffer.alloc(0);
  /** Bytes of the current message's body still to come. */
  private left = 0;
  /** The current message so far, when it is a notification. */
  private parts: Buffer[] | undefined;

  feed(data: Buffer, found: (msg: Buffer) => void): void {
    let i = 0;
    while (i < data.length) {
      if (this.left > 0) {
        const n = Math.min(this.left, data.length - i);
        this.parts?.push(Buffer.from(data.subarray(i, i + n)));
        this.left -= n;
        i += n;
      } else {
        const take = data.subarray(i, i + 5 - this.header.length);
        this.header = Buffer.concat([this.header, take]);
        i += take.length;
        if (this.header.length < 5) return;
        this.left = this.header.readInt32BE(1) - 4;
        this.parts = this.header[0] === 0x41 ? [this.header] : undefined;
        this.header = Buffer.alloc(0);
      }
      if (this.left === 0 && this.parts) {
        found(Buffer.concat(this.parts));
        this.parts = undefined;
      }
    }
  }
}
