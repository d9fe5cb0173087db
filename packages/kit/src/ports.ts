// Listening ports. A port of 0 takes a free one (bindFree); the process then
// reports the ports it bound in the file its supervisor names (TALON_PORTS_FILE),
// and the supervisor (`talon up`, the test harness) hands those numbers to the
// processes that connect to it. No port is picked by one process and bound later
// by another: on a shared machine something else can take it in between.
// A port that is set and taken stops the process at once, naming the variable.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, ConfigFieldError } from './config.ts';

/** Where a service writes the ports it bound (set by the supervisor, per process). */
export const PORTS_FILE_ENV = 'TALON_PORTS_FILE';
/**
 * Settings naming a peer whose port is not known when this process starts: JSON
 * `{ KEY: { file, role, template } }`. Before its configuration is read, the process
 * waits for the peer's ports file and sets KEY to `template` with `{port}` replaced.
 * Processes thus boot side by side instead of each waiting for the previous one.
 */
export const PEER_PORTS_ENV = 'TALON_PEER_PORTS';

/** Listeners of a service by role (`grpc`, `http`, `proxy`...), with the ports actually bound. */
export type BoundPorts = Record<string, number>;

export interface PeerPort {
  /** The peer's ports file (its TALON_PORTS_FILE). */
  file: string;
  /** Which of its listeners. */
  role: string;
  /** The setting's value, with `{port}` where the port goes. */
  template: string;
}

/** A ports file's content, or undefined while it is not there (it appears whole). */
export function readPortsFile(file: string): BoundPorts | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as BoundPorts;
  } catch {
    return undefined;
  }
}

/**
 * Resolves the settings named in TALON_PEER_PORTS (see PEER_PORTS_ENV) once every
 * peer has reported its ports; a no-op without it. Bounded: a peer that never comes
 * up ends the wait with an error naming its ports file.
 */
export async function awaitPeerPorts(env: Record<string, string | undefined> = process.env, timeoutMs = 120_000): Promise<void> {
  const raw = env[PEER_PORTS_ENV];
  if (!raw) return;
  const pending = new Map(Object.entries(JSON.parse(raw) as Record<string, PeerPort>));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const [key, peer] of pending) {
      const port = readPortsFile(peer.file)?.[peer.role];
      if (typeof port === 'number' && Number.isInteger(port) && port > 0) {
        env[key] = peer.template.replace('{port}', String(port));
        pending.delete(key);
      }
    }
    if (pending.size === 0) break;
    if (Date.now() > deadline) {
      const waiting = [...pending].map(([key, p]) => `${key} (${p.role} port in ${p.file})`).join(', ');
      throw new Error(`gave up after ${timeoutMs} ms waiting for the ports of ${waiting}`);
    }
    await sleep(25);
  }
  delete env[PEER_PORTS_ENV];
}

/**
 * Writes the bound ports for the supervisor, once every listener is up. Written to a
 * temporary name and renamed, so a reader never sees half a file.
 */
export function reportPorts(ports: BoundPorts, env: Record<string, string | undefined> = process.env): void {
  const file = env[PORTS_FILE_ENV];
  if (!file) return;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(ports)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

/** True for "address already in use", however the library words it (Node, grpc-js). */
export function isAddressInUse(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  return e?.code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(String(e?.message ?? ''));
}

/** The configuration error for a port that is set and taken: names the address and the variable. */
export function portInUseError(service: string, key: string, host: string, port: number): ConfigError {
  return new ConfigError(service, [
    new ConfigFieldError(
      key,
      `${host.includes(':') ? `[${host}]` : host}:${port} is already in use`,
      `Stop whatever listens there, or set ${key} to another port (0 picks a free one)`,
    ),
  ]);
}

/** An inclusive range of TCP ports. */
export interface PortRange {
  low: number;
  high: number;
}

/** Below this are the usual ports of other servers (PostgreSQL 5432, NATS 4222, 8080…): a free port is never taken there. */
export const FREE_PORT_FLOOR = 10_000;

/** IANA's dynamic range, the ephemeral range of macOS and Windows. */
const IANA_EPHEMERAL: PortRange = Object.freeze({ low: 49_152, high: 65_535 });

/** `ip_local_port_range`'s content ("32768\t60999"), or undefined when it is not two ports in order. */
export function parsePortRange(text: string): PortRange | undefined {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) return undefined;
  const low = Number(m[1]);
  const high = Number(m[2]);
  return low >= 1 && low <= high && high <= 65_535 ? { low, high } : undefined;
}

let ephemeral: PortRange | undefined;

/** The range the kernel takes the source ports of outgoing connections from (Linux's setting; IANA's elsewhere). */
export function ephemeralPortRange(): PortRange {
  if (!ephemeral) {
    let text = '';
    try {
      text = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    } catch {
      // Not Linux (or no /proc): the IANA default.
    }
    ephemeral = parsePortRange(text) ?? IANA_EPHEMERAL;
  }
  return ephemeral;
}

/**
 * `count` distinct random ports from FREE_PORT_FLOOR–65535 outside `eph`, the kernel's
 * ephemeral range; none when the ephemeral range leaves no room. Why not the kernel's
 * own choice (port 0): it comes from the ephemeral range, and a process that restarts
 * binds the port it reported before (its peers have it). While it is down, any
 * outgoing connection on the machine can get that port as its source port — a gRPC
 * or NATS client reconnecting to it even connects to itself (TCP simultaneous open) —
 * and the restart then finds its port taken.
 */
export function freePortCandidates(eph: PortRange, count: number, random: () => number = Math.random): number[] {
  const ranges: PortRange[] = [
    { low: FREE_PORT_FLOOR, high: Math.min(eph.low - 1, 65_535) },
    { low: Math.max(eph.high + 1, FREE_PORT_FLOOR), high: 65_535 },
  ].filter((r) => r.low <= r.high);
  const size = ranges.reduce((n, r) => n + r.high - r.low + 1, 0);
  const out = new Set<number>();
  for (let tries = 0; out.size < Math.min(count, size) && tries < count * 4; tries++) {
    let i = Math.floor(random() * size);
    for (const r of ranges) {
      const n = r.high - r.low + 1;
      if (i < n) {
        out.add(r.low + i);
        break;
      }
      i -= n;
    }
  }
  return [...out];
}

/**
 * Binds `port` with `bind`; for port 0, a free port outside the ephemeral range (see
 * freePortCandidates): candidates that are taken are skipped, and only when every one
 * was taken does the kernel choose. Errors other than "address in use" end it at once.
 */
export async function bindFree<T>(
  port: number,
  bind: (port: number) => Promise<T>,
  candidates: () => readonly number[] = () => freePortCandidates(ephemeralPortRange(), 32),
): Promise<T> {
  if (port !== 0) return bind(port);
  for (const candidate of candidates()) {
    try {
      return await bind(candidate);
    } catch (err) {
      if (!isAddressInUse(err)) throw err;
    }
  }
  return bind(0);
}

/** Listens on `port` of `host` (0: bindFree's choice, from `candidates` when given) and resolves with the port bound. */
export function listenFree(server: Server, host: string, port: number, candidates?: () => readonly number[]): Promise<number> {
  return bindFree(port, (p) => listenServer(server, host, p), candidates);
}

function listenServer(server: Server, host: string, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}

/**
 * A port free on `host` now, outside the ephemeral range, for a server that must be
 * told its port before it binds (nats-server's cluster routes, a test's PostgreSQL).
 * Racy by nature: its user must fail clearly, or retry, when the port is gone.
 */
export async function freeLoopbackPort(host = '127.0.0.1'): Promise<number> {
  const probe = createServer();
  const port = await listenFree(probe, host, 0);
  await new Promise((r) => probe.close(r));
  return port;
}

/**
 * Binds a Node server and resolves with the port it got (port 0: bindFree's choice). "Address in use" becomes a
 * ConfigError naming `key`, so the service exits with EX_CONFIG and a clear message.
 */
export async function listenOn(server: Server, o: { service: string; key: string; host: string; port: number }): Promise<number> {
  try {
    return await listenFree(server, o.host, o.port);
  } catch (err) {
    throw isAddressInUse(err) ? portInUseError(o.service, o.key, o.host, o.port) : err;
  }
}
