// Profile of one large request body through the scanner as egress calls it:
//   node bench/scan-profile.ts [--body 256k-a|256k-mix|256k-json|256k-prose|256k-b64] [--iters 200] [--kib 256] [--secrets 8]
//   node --cpu-prof --cpu-prof-dir /tmp/prof bench/scan-profile.ts --body 256k-a
// Prints ms per scan (wall and CPU) and MB/s per CPU time; figures, not assertions.
import { randomBytes } from 'node:crypto';
import { benchArgs } from './args.ts';
import { leakScanner } from '../services/egress/src/scanning.ts';
import { fingerprintSecret } from '../services/egress/src/scan/fingerprint.ts';

const { values } = benchArgs({
  options: {
    body: { type: 'string', default: '256k-a' },
    iters: { type: 'string', default: '200' },
    kib: { type: 'string', default: '256' },
    secrets: { type: 'string', default: '8' },
  },
});
const SIZE = Number(values.kib) * 1024;
const ITERS = Number(values.iters);

let seed = 0x2545f491;
const rand = (): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
};
const WORDS =
  'the of and to in is it that for you was with on as have agent request token session deploy cluster vault egress policy'.split(' ');
const prose = (n: number): string => {
  let s = '';
  while (s.length < n) s += WORDS[Math.floor(rand() * WORDS.length)] + (rand() < 0.08 ? '. ' : ' ');
  return s.slice(0, n);
};
const randomLike = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
};

/** Bodies of about SIZE bytes, with the content type egress would see. */
function makeBody(kind: string): { body: Buffer; type: string } {
  switch (kind) {
    case '256k-a':
      return { body: Buffer.alloc(SIZE, 'a'), type: 'application/octet-stream' };
    case '256k-prose':
      return { body: Buffer.from(prose(SIZE)), type: 'text/plain' };
    case '256k-b64':
      return { body: Buffer.from(randomLike(Math.floor((SIZE * 3) / 4)).toString('base64')), type: 'text/plain' };
    case '256k-json': {
      const messages = [];
      let n = 0;
      while (n < SIZE - 200) {
        const content = prose(200 + Math.floor(rand() * 3000));
        messages.push({ role: rand() < 0.5 ? 'user' : 'assistant', content });
        n += content.length + 40;
      }
      return { body: Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages })), type: 'application/json' };
    }
    case '256k-mix': {
      // A chat payload with prose, a base64 attachment and a hex digest list: what agents upload.
      const b64 = randomLike(Math.floor(SIZE / 4)).toString('base64');
      const hex = Array.from({ length: 64 }, () => randomLike(32).toString('hex'));
      const messages = [{ role: 'system', content: prose(SIZE / 8) }];
      while (JSON.stringify(messages).length < SIZE / 2) messages.push({ role: 'user', content: prose(500 + Math.floor(rand() * 2500)) });
      return {
        body: Buffer.from(JSON.stringify({ model: 'x', messages, attachment: { name: 'a.png', data: b64 }, digests: hex })),
        type: 'application/json',
      };
    }
    default:
      throw new Error(`unknown --body ${kind}`);
  }
}

// The scanner inline, as egress builds it (what a scan-pool worker runs too).
const scanner = leakScanner({ maxScanBytes: 16 * 1024 * 1024 });
// The vault secret bench:egress stores, and --secrets more (random bytes and random tokens, as bench/scanner.ts has).
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
scanner.setFingerprints([
  fingerprintSecret('bench_key', Buffer.from('bench-secret-value-0123456789abcdef')),
  ...Array.from({ length: Number(values.secrets) }, (_, i) =>
    fingerprintSecret(
      `s${i}`,
      i % 2 === 0
        ? randomBytes(16 + (i % 33))
        : Buffer.from(Array.from({ length: 20 + (i % 45) }, () => ALNUM[Math.floor(rand() * 64)]).join('')),
    ),
  ),
]);
const { body, type } = makeBody(values.body);
const req = {
  url: 'http://127.0.0.1:40000/echo',
  headers: {
    'content-type': type,
    'content-length': String(body.length),
    host: '127.0.0.1:40000',
    authorization: 'Bearer {{secret:bench_key}}',
  },
  body,
};
const findings = scanner.scanRequest(req);
for (let i = 0; i < Math.min(20, ITERS); i++) scanner.scanRequest(req);
const c0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < ITERS; i++) scanner.scanRequest(req);
const wall = (performance.now() - t0) / ITERS;
const cu = process.cpuUsage(c0);
const cpu = (cu.user + cu.system) / 1000 / ITERS;
console.log(
  `${values.body} (${body.length} bytes, ${type}): ${wall.toFixed(3)} ms/scan wall, ${cpu.toFixed(3)} ms CPU, ` +
    `${(body.length / 1e3 / cpu).toFixed(0)} MB/s per CPU time; findings: ${findings.map((f) => `${f.id}@${f.encoding}`).join(', ') || 'none'}`,
);
