import { freeLoopbackPort } from '@talon/kit/ports';

/**
 * A free loopback port (kit's freeLoopbackPort: closed again before returning, outside the
 * ephemeral range). Racy by nature: anything may bind the port before its user does. Only
 * for programs that cannot bind port 0 and say which port they got (tinyproxy); Talon's own
 * processes, PGlite and mitmdump report theirs.
 */
export function freePort(): Promise<number> {
  return freeLoopbackPort();
}
