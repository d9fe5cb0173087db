import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { fingerprintSecret } from './scan/fingerprint.ts';
import { RULE_FIXTURES } from './scan/rule-fixtures.ts';
import type { ScanRequestInput } from './scan/index.ts';
import { ScanPool, ScanWorkerFailed } from './scan-pool.ts';
import { createScanner, leakScanner, POOL_MIN_BYTES } from './scanning.ts';

// Fake secrets built at run time.
const CANARY = 'canary-pool-7Hq2Zx9Lm4Tp';
const LATER = 'later-secret-Qw8Rt5Yu2Io';
const fingerprints = [fingerprintSecret('canary', Buffer.from(CANARY))];

const b64 = (s: string) => Buffer.from(s).toString('base64');
const hex = (s: string) => Buffer.from(s).toString('hex');
/** Text around a payload, `size` bytes or so. */
const padded = (payload: string, size = 16 * 1024) =>
  `${'lorem ipsum dolor sit amet '.repeat(Math.ceil(size / 54))} ${payload} ${'x'.repeat(size / 2)}`;

/** Every rule fixture, raw and in a few carriers, plus vault-secret carriers and the limit findings. */
function corpus(): ScanRequestInput[] {
  const reqs: ScanRequestInput[] = [];
  const wraps: Array<(s: string) => string> = [(s) => s, b64, hex, (s) => encodeURIComponent(s), (s) => [...s].join(' ')];
  for (const fx of Object.values(RULE_FIXTURES))
    for (const sample of [...fx.positives, ...fx.nearMisses].slice(0, 2))
      for (const wrap of wraps)
        reqs.push({ url: 'https://api.example.com/v1/x', headers: { 'content-type': 'text/plain' }, body: Buffer.from(`${wrap(sample)}`) });
  for (const wrap of wraps)
    reqs.push({
      url: `https://api.example.com/v1/x?q=${encodeURIComponent(wrap(CANARY))}`,
      headers: { 'content-type': 'application/json', 'x-key': wrap(CANARY) },
      body: Buffer.from(JSON.stringify({ a: wrap(CANARY.slice(0, 9)), b: wrap(CANARY.slice(9)), text: padded(wrap(CANARY)) })),
    });
  reqs.push({
    url: 'https://api.example.com/upload',
    headers: { 'content-encoding': 'gzip', 'content-type': 'text/plain' },
    body: gzipSync(padded(b64(CANARY))),
  });
  reqs.push({ url: 'https://api.example.com/upload', headers: { 'content-encoding': 'gzip' }, body: Buffer.from('not gzip at all') });
  reqs.push({ url: 'https://api.example.com/big', headers: {}, body: Buffer.alloc(256 * 1024, 'a') });
  return reqs;
}

describe('ScanPool', () => {
  const pool = new ScanPool({ size: 2, maxScanBytes: 1 << 20 });
  pool.setFingerprints(fingerprints);
  const inline = leakScanner({ maxScanBytes: 1 << 20 });
  inline.setFingerprints(fingerprints);
  after(() => pool.close());

  it('gives the inline scanner’s findings, in order, on the fixture corpus', async () => {
    const reqs = corpus();
    const pooled = await Promise.all(reqs.map((r) => pool.scan(r) ?? Promise.reject(new Error('declined'))));
    let found = 0;
    for (const [i, r] of reqs.entries()) {
      const expected = inline.scanRequest(r);
      assert.deepEqual(pooled[i], expected, `request ${i}`);
      if (expected.length > 0) found++;
    }
    // The corpus is not vacuous: most requests carry something.
    assert.ok(found > reqs.length / 2, `${found} of ${reqs.length} requests had findings`);
  });

  it('uses fingerprints set after it started, and leaves the caller’s body intact', async () => {
    const body = Buffer.from(padded(LATER));
    const r = { url: 'https://api.example.com/x', headers: {}, body };
    assert.deepEqual(await pool.scan(r), []);
    pool.setFingerprints([...fingerprints, fingerprintSecret('later', Buffer.from(LATER))]);
    const findings = await pool.scan(r);
    assert.deepEqual(
      findings?.map((f) => f.id),
      ['later'],
    );
    assert.equal(body.toString(), padded(LATER));
  });

  it('declines work past its queue bound, so the caller scans inline', async () => {
    const small = new ScanPool({ size: 1, maxScanBytes: 1 << 20, maxQueuedBytes: 100 * 1024 });
    try {
      const r = { url: 'https://api.example.com/x', headers: {}, body: Buffer.alloc(80 * 1024, 'b') };
      const first = small.scan(r);
      assert.ok(first !== null, 'an empty queue takes any scan');
      assert.equal(small.scan(r), null, 'a full queue declines');
      assert.deepEqual(await first, []);
      const again = small.scan(r);
      assert.ok(again !== null, 'and takes work again once drained');
      assert.deepEqual(await again, []);
    } finally {
      await small.close();
    }
  });
});

describe('ScanPool failures', () => {
  it('refuses the scans of a worker that died, and replaces it', async () => {
    // A stand-in worker that dies on its first scan.
    const dying = new URL(
      `data:text/javascript,${encodeURIComponent("import { parentPort } from 'node:worker_threads'; parentPort.on('message', (m) => { if (m.kind === 'scan') process.exit(3); });")}`,
    );
    const pool = new ScanPool({ size: 1, maxScanBytes: 1 << 20, workerUrl: dying });
    try {
      const r = { url: 'https://api.example.com/x', headers: {}, body: Buffer.from('x') };
      await assert.rejects(pool.scan(r)!, (err) => err instanceof ScanWorkerFailed && err.code === 'unavailable');
      assert.equal(pool.size, 1);
      await assert.rejects(pool.scan(r)!, ScanWorkerFailed, 'the replacement answers (by dying too)');
    } finally {
      await pool.close();
    }
  });

  it('refuses pending scans when closed, and declines new ones', async () => {
    const pool = new ScanPool({ size: 1, maxScanBytes: 1 << 20 });
    const pending = pool.scan({ url: 'https://api.example.com/x', headers: {}, body: Buffer.alloc(1 << 20, 'c') });
    const refused = assert.rejects(pending!, ScanWorkerFailed);
    await pool.close();
    await refused;
    assert.equal(pool.scan({ url: 'https://api.example.com/x', headers: {}, body: Buffer.from('x') }), null);
  });
});

describe('createScanner with a pool', () => {
  it('scans large bodies in a worker and small ones inline, with the same findings', async () => {
    const pooled = createScanner({ maxScanBytes: 4 << 20, workers: 1 });
    const inline = createScanner({ maxScanBytes: 4 << 20, workers: 0 });
    try {
      for (const s of [pooled, inline]) s.setFingerprints(fingerprints);
      const large = { url: 'https://api.example.com/x', headers: {}, body: Buffer.from(padded(hex(CANARY), POOL_MIN_BYTES)) };
      const small = { url: 'https://api.example.com/x', headers: {}, body: Buffer.from(hex(CANARY)) };
      const fromPool = pooled.scanRequest(large);
      assert.ok(fromPool instanceof Promise, 'a large body goes to the pool');
      assert.deepEqual(await fromPool, inline.scanRequest(large));
      assert.ok(Array.isArray(pooled.scanRequest(small)), 'a small body is scanned inline');
      assert.deepEqual(pooled.scanRequest(small), inline.scanRequest(small));
      assert.deepEqual(
        (await fromPool).map((f) => f.id),
        ['canary'],
      );
    } finally {
      await pooled.close();
      await inline.close();
    }
  });
});
