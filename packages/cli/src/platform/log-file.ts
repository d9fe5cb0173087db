// A service's log file under TALON_HOME/logs, rotated by size: when a write would
// take `<name>.log` past `maxBytes`, the file is renamed to `<name>.log.1` (older
// ones shift to .2 … .N, the oldest beyond `files` is deleted) and a new one is
// started. Writes are synchronous and whole: a line is never split across two
// files and nothing is lost at a rotation. In containers services log to stdout
// and no file is written (docs/architecture.md, "Logs").
import { closeSync, existsSync, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_LOG_FILES = 5;

export interface LogRotation {
  /** Size at which the file is rotated (bytes). */
  maxBytes: number;
  /** Rotated files kept (`.1` newest … `.N` oldest). */
  files: number;
}

/** TALON_LOG_MAX_BYTES / TALON_LOG_FILES, or the defaults; throws with what to set on a bad value. */
export function logRotation(env: Record<string, string | undefined> = process.env): LogRotation {
  const int = (key: string, def: number, min: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return def;
    if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) throw new Error(`${key} must be an integer of at least ${min}; got ${raw}`);
    return Number(raw);
  };
  return { maxBytes: int('TALON_LOG_MAX_BYTES', DEFAULT_LOG_MAX_BYTES, 1024), files: int('TALON_LOG_FILES', DEFAULT_LOG_FILES, 1) };
}

/** The names a rotation moves, oldest first: [`f.N-1` → `f.N`, …, `f` → `f.1`]. Pure. */
export function rotationMoves(file: string, files: number): Array<[from: string, to: string]> {
  const moves: Array<[string, string]> = [];
  for (let i = files - 1; i >= 1; i--) moves.push([`${file}.${i}`, `${file}.${i + 1}`]);
  moves.push([file, `${file}.1`]);
  return moves;
}

export class RotatingLogFile {
  readonly path: string;
  private readonly rotation: LogRotation;
  private fd: number | undefined;
  private size = 0;
  /** Bytes of the current line not yet ended: a rotation waits for the newline. */
  private midLine = false;

  constructor(path: string, rotation: LogRotation = logRotation()) {
    this.path = path;
    this.rotation = rotation;
    this.open();
  }

  private open(): void {
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  /** Appends a chunk; rotates first when it would pass the limit and the file ends at a line boundary. */
  write(chunk: Buffer | string): void {
    if (this.fd === undefined) return;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (buf.length === 0) return;
    if (this.size > 0 && this.size + buf.length > this.rotation.maxBytes) {
      const nl = buf.indexOf(0x0a);
      if (this.midLine && nl >= 0) {
        // Finish the open line in this file, rotate, then write the rest in the next one.
        this.append(buf.subarray(0, nl + 1));
        this.rotate();
        this.write(buf.subarray(nl + 1));
        return;
      }
      if (!this.midLine) this.rotate();
    }
    this.append(buf);
  }

  private append(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd!, buf, off, buf.length - off);
    this.size += buf.length;
    if (buf.length > 0) this.midLine = buf[buf.length - 1] !== 0x0a;
  }

  private rotate(): void {
    closeSync(this.fd!);
    this.fd = undefined;
    rmSync(`${this.path}.${this.rotation.files}`, { force: true });
    for (const [from, to] of rotationMoves(this.path, this.rotation.files)) if (existsSync(from)) renameSync(from, to);
    this.open();
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
