// A tiny authoritative DNS server on loopback UDP for tests: answers A queries
// from a function (so an answer can change between two lookups) and counts queries.
import { createSocket } from 'node:dgram';

export interface FakeDns {
  port: number;
  address: string;
  queries: Array<{ name: string; type: number }>;
  close(): Promise<void>;
}

function readName(buf: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let i = offset;
  while (buf[i]! > 0) {
    const len = buf[i]!;
    labels.push(buf.subarray(i + 1, i + 1 + len).toString('ascii'));
    i += len + 1;
  }
  return { name: labels.join('.').toLowerCase(), next: i + 1 };
}

export async function startFakeDns(answer: (name: string, nth: number) => string | undefined): Promise<FakeDns> {
  const sock = createSocket('udp4');
  const queries: FakeDns['queries'] = [];
  const counts = new Map<string, number>();
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    const { name, next } = readName(msg, 12);
    const qtype = msg.readUInt16BE(next);
    queries.push({ name, type: qtype });
    const question = msg.subarray(12, next + 4);
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // id
    let ip: string | undefined;
    if (qtype === 1) {
      const n = (counts.get(name) ?? 0) + 1;
      counts.set(name, n);
      ip = answer(name, n);
    }
    header.writeUInt16BE(0x8180 | (ip || qtype !== 1 ? 0 : 3), 2); // response, RD+RA, NXDOMAIN when unknown
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(ip ? 1 : 0, 6);
    const parts = [header, question];
    if (ip) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(0, 6); // TTL 0: never cache
      rr.writeUInt16BE(4, 10);
      ip.split('.').forEach((o, i) => rr.writeUInt8(Number(o), 12 + i));
      parts.push(rr);
    }
    sock.send(Buffer.concat(parts), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return {
    port: sock.address().port,
    address: `127.0.0.1:${sock.address().port}`,
    queries,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}
