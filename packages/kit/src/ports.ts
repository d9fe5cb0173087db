// Listening ports. A port of 0 asks the kernel for a free one; the process then
// reports the ports it bound in the file its supervisor names (TALON_PORTS_FILE),
// and the supervisor (`talon up`, the test harness) hands those numbers to the
// processes that connect to it. No port is picked by one process and bound later
// by another: on a shared machine something else can take it in between.
// A port that is set and taken stops the process at once, naming the variable.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
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

/**
 * Binds a Node server and resolves with the port it got. "Address in use" becomes a
 * ConfigError naming `key`, so the service exits with EX_CONFIG and a clear message.
 */
export async function listenOn(server: Server, o: { service: string; key: string; host: string; port: number }): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(isAddressInUse(err) ? portInUseError(o.service, o.key, o.host, o.port) : err);
    server.once('error', onError);
    server.listen(o.port, o.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : o.port;
}
