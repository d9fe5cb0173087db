import { createServer } from 'node:net';

/**
 * Asks the kernel for a free loopback port (closed again before returning). Racy by
 * nature: anything may bind the port before its user does. Only for programs that
 * cannot bind port 0 and say which port they got (tinyproxy); Talon's own processes,
 * nats-server, PGlite and mitmdump all report theirs.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}
