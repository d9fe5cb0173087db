// Leak scanner benchmark: node_modules/.bin/node bench/scanner.ts [--mb 20]
//
// (a) throughput of LeakScanner.scanRequest over ~20 MB of mixed realistic
//     request bodies (JSON API payloads, prose, base64 blobs, code, form bodies)
//     with every built-in rule and 50 secret fingerprints loaded (target >= 150 MB/s);
//     then (a2) on documents the newer layers work on: multilingual chat and HTML
//     (clean), and documents carrying a leak in each carrier the scanner reads
//     (Unicode tricks, split values, reversal, ROT13, base32, HTML entities,
//     UTF-16, separators). Kept apart from (a) so that (a) stays comparable over time.
// (b) for every rule, the slowest of several 100 KB near-miss inputs crafted to
//     almost match it over and over, and for each newer layer the slowest of
//     inputs crafted against it (target < 20 ms);
// (c) ExactMatcher alone, and the streaming ResponseRedactor, on the same corpus.
// (d) one 256 KiB request body as egress scans it: what bench:egress sends (one
//     character repeated), and realistic ones (chat JSON, a base64 upload, a mix).
//     bench/scan-profile.ts profiles one of them (node --cpu-prof).
// Figures, not assertions: the process exits 0 whatever it measures.
import { cpus, totalmem } from 'node:os';
import { gzipSync, constants as zlibConstants } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { LeakScanner } from '../services/egress/src/scan/scanner.ts';
import { ExactMatcher } from '../services/egress/src/scan/exact.ts';
import { ResponseRedactor } from '../services/egress/src/scan/redactor.ts';
import { fingerprintSecret } from '../services/egress/src/scan/fingerprint.ts';
import { BUILTIN_RULES } from '../services/egress/src/scan/rules.ts';
import { RULE_FIXTURES } from '../services/egress/src/scan/rule-fixtures.ts';
import { redactText } from '../services/egress/src/scan/redact.ts';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const CORPUS_MB = arg('--mb', 20);
const partsArg = process.argv.indexOf('--parts');
/** Which of (a), (b), (c), (d) to run, e.g. `--parts ac`. */
const PARTS = partsArg >= 0 ? (process.argv[partsArg + 1] ?? 'abcd') : 'abcd';
const NEAR_MISS_BYTES = 100 * 1024;

// ------------------------------------------------------------------ deterministic corpus
let seed = 0x1234567;
const rand = (): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
};
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chars = (alphabet: string, n: number): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
};
const HEX = '0123456789abcdef';
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

const WORDS = (
  'the of and to in is it that for you was with on as have but be they at one this from by not or what all were we when your can ' +
  'said there use an each which she do how their if will up other about out many then them these so some her would make like him ' +
  'into time has look two more write go see number no way could people my than first water been call who oil its now find long ' +
  'down day did get come made may part agent request response server client token session deploy cluster service memory vault ' +
  'egress policy network latency throughput database migration schema index query customer invoice payment shipment warehouse ' +
  'analysis report summary quarterly revenue forecast meeting schedule calendar reminder document attachment translation'
).split(' ');

function sentence(): string {
  const n = int(6, 22);
  const ws: string[] = [];
  for (let i = 0; i < n; i++) ws.push(pick(WORDS));
  if (rand() < 0.15) ws.splice(int(0, ws.length), 0, String(int(1, 99999)));
  if (rand() < 0.05) ws.splice(int(0, ws.length), 0, `https://docs.example.com/${pick(WORDS)}/${pick(WORDS)}?page=${int(1, 9)}`);
  if (rand() < 0.08) ws.splice(int(0, ws.length), 0, `"${pick(WORDS)} ${pick(WORDS)}"`);
  const s = ws.join(' ');
  return s[0]!.toUpperCase() + s.slice(1) + pick(['.', '.', '.', '?', '!', ':']);
}

function prose(bytes: number): string {
  let out = '';
  while (out.length < bytes) {
    let para = '';
    for (let i = int(2, 7); i > 0; i--) para += sentence() + ' ';
    out += para.trimEnd() + '\n\n';
  }
  return out;
}

function code(bytes: number): string {
  const ids = [
    'userId',
    'requestBody',
    'handleResponse',
    'parseConfig',
    'retryCount',
    'maxRetries',
    'connectionPool',
    'encodeQuery',
    'x',
    'i',
  ];
  let out = "import { readFile } from 'node:fs/promises';\nimport type { Config } from './config.ts';\n\n";
  while (out.length < bytes) {
    const f = pick(ids) + int(1, 99);
    out +=
      `/** ${sentence()} */\nexport async function ${f}(${pick(ids)}: string, opts: { timeoutMs?: number } = {}): Promise<number> {\n` +
      `  const ${pick(ids)} = await fetch(\`https://api.example.com/v1/${pick(WORDS)}/\${encodeURIComponent(${pick(ids)})}\`);\n` +
      `  if (!res.ok) throw new Error('request failed: ' + res.status + '\\n' + (await res.text()));\n` +
      `  const re = /^[a-z0-9_-]{3,32}$/i; // ${sentence()}\n` +
      `  for (let i = 0; i < ${int(2, 64)}; i++) total += Math.max(0, values[i] ?? 0) * ${int(1, 9)};\n` +
      `  return JSON.parse(text.replace(/\\\\n/g, '\\n')).items.length;\n}\n\n` +
      `def ${f}_py(path: str) -> dict:\n    """${sentence()}"""\n    with open(path, "r", encoding="utf-8") as fh:\n        return {"k": fh.read().split("\\t")}\n\n`;
  }
  return out;
}

function chatPayload(): string {
  const messages: Array<Record<string, unknown>> = [{ role: 'system', content: prose(int(200, 800)) }];
  for (let i = int(2, 12); i > 0; i--) {
    messages.push({ role: 'user', content: prose(int(80, 1500)) });
    if (rand() < 0.4)
      messages.push({
        role: 'assistant',
        tool_calls: [
          {
            id: 'call_' + chars(ALNUM, 24),
            type: 'function',
            function: {
              name: pick(WORDS) + '_' + pick(WORDS),
              arguments: JSON.stringify({ query: sentence(), limit: int(1, 50), page: int(1, 9) }),
            },
          },
        ],
      });
    else messages.push({ role: 'assistant', content: prose(int(80, 2500)) + (rand() < 0.3 ? '```ts\n' + code(400) + '```' : '') });
  }
  return JSON.stringify({ model: 'gpt-4o-mini', temperature: 0.2, stream: rand() < 0.5, messages });
}

function apiListPayload(): string {
  const items = [];
  for (let i = int(5, 60); i > 0; i--)
    items.push({
      id: int(1, 1e9),
      node_id: chars(ALNUM, 20),
      sha: chars(HEX, 40),
      url: `https://api.example.com/repos/acme/${pick(WORDS)}/commits/${chars(HEX, 40)}`,
      created_at: new Date(1.7e12 + int(0, 1e10)).toISOString(),
      uuid: `${chars(HEX, 8)}-${chars(HEX, 4)}-${chars(HEX, 4)}-${chars(HEX, 4)}-${chars(HEX, 12)}`,
      title: sentence(),
      body: prose(int(50, 600)),
      labels: [pick(WORDS), pick(WORDS)],
      score: rand(),
    });
  return JSON.stringify({ total_count: items.length, items }, null, rand() < 0.5 ? 2 : undefined);
}

function base64Payload(): string {
  const kind = rand();
  if (kind < 0.5)
    return JSON.stringify({
      filename: `${pick(WORDS)}.png`,
      content_type: 'image/png',
      data: randomLike(int(2_000, 120_000)).toString('base64'),
    });
  if (kind < 0.8)
    return JSON.stringify({
      path: `docs/${pick(WORDS)}.md`,
      message: sentence(),
      content: Buffer.from(prose(int(1_000, 40_000))).toString('base64'),
    });
  return `data:application/octet-stream;base64,${randomLike(int(1_000, 60_000)).toString('base64')}`;
}

function formPayload(): string {
  const parts: string[] = [];
  for (let i = int(3, 30); i > 0; i--) parts.push(`${pick(WORDS)}=${encodeURIComponent(sentence()).replace(/%20/g, '+')}`);
  return parts.join('&');
}

/** Incompressible-looking bytes without calling into crypto per byte (deterministic). */
function randomLike(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

interface Doc {
  kind: string;
  contentType: string;
  body: Buffer;
}

function corpus(targetBytes: number): Doc[] {
  const docs: Doc[] = [];
  let total = 0;
  while (total < targetBytes) {
    const r = rand();
    let doc: Doc;
    if (r < 0.35) doc = { kind: 'chat JSON', contentType: 'application/json', body: Buffer.from(chatPayload()) };
    else if (r < 0.55) doc = { kind: 'API list JSON', contentType: 'application/json', body: Buffer.from(apiListPayload()) };
    else if (r < 0.7) doc = { kind: 'prose', contentType: 'text/plain; charset=utf-8', body: Buffer.from(prose(int(2_000, 60_000))) };
    else if (r < 0.8) doc = { kind: 'base64 blobs', contentType: 'application/json', body: Buffer.from(base64Payload()) };
    else if (r < 0.93) doc = { kind: 'code', contentType: 'text/x-typescript', body: Buffer.from(code(int(2_000, 40_000))) };
    else doc = { kind: 'form', contentType: 'application/x-www-form-urlencoded', body: Buffer.from(formPayload()) };
    docs.push(doc);
    total += doc.body.length;
  }
  return docs;
}

// ------------------------------------------------------------------ helpers
function timeMs(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}
/** Wall and CPU (user+system) milliseconds: on a shared machine the CPU figure shows what the code costs. */
function timeBoth(fn: () => void): { wall: number; cpu: number } {
  const c = process.cpuUsage();
  const wall = timeMs(fn);
  const u = process.cpuUsage(c);
  return { wall, cpu: (u.user + u.system) / 1000 };
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mbps = (bytes: number, ms: number): string => (bytes / 1e6 / (ms / 1000)).toFixed(0);

function repeatTo(unit: string, bytes: number): string {
  if (unit.length === 0) return '';
  return unit.repeat(Math.ceil(bytes / unit.length)).slice(0, bytes);
}

// ------------------------------------------------------------------ run
const cpu = cpus();
console.log(`machine: ${cpu[0]?.model ?? 'unknown'} x${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}`);

const docs = corpus(CORPUS_MB * 1e6);
const totalBytes = docs.reduce((n, d) => n + d.body.length, 0);
const fingerprints = Array.from({ length: 50 }, (_, i) =>
  fingerprintSecret(`bench_secret_${i}`, i % 2 === 0 ? randomBytes(int(16, 48)) : Buffer.from(chars(ALNUM + '-_', int(20, 64)))),
);
const scanner = new LeakScanner();
scanner.setFingerprints(fingerprints);
console.log(
  `setup: ${docs.length} documents, ${(totalBytes / 1e6).toFixed(1)} MB; ${BUILTIN_RULES.length} rules; ` +
    `${fingerprints.length} secrets (${scanner.exactMatcher.formCount} fingerprinted forms)`,
);

// (a) throughput
if (PARTS.includes('a')) {
  const scanAll = (): number => {
    let findings = 0;
    for (const d of docs)
      findings += scanner.scanRequest({
        url: 'https://api.example.com/v1/chat/completions?stream=true',
        headers: { 'content-type': d.contentType, authorization: 'Bearer {{secret:llm_api_key}}', 'user-agent': 'talon/0.1' },
        body: d.body,
      }).length;
    return findings;
  };
  let findings = scanAll(); // warm-up (JIT)
  const runs: Array<{ wall: number; cpu: number }> = [];
  for (let i = 0; i < 5; i++) runs.push(timeBoth(() => (findings = scanAll())));
  const wall = median(runs.map((r) => r.wall));
  const cpuMs = median(runs.map((r) => r.cpu));
  console.log(
    `\n(a) LeakScanner.scanRequest on mixed corpus: median ${wall.toFixed(0)} ms wall -> ${mbps(totalBytes, wall)} MB/s ` +
      `(best ${mbps(totalBytes, Math.min(...runs.map((r) => r.wall)))}); per CPU time ${mbps(totalBytes, cpuMs)} MB/s; ` +
      `findings: ${findings}   [target >= 150 MB/s]`,
  );
  const kinds = [...new Set(docs.map((d) => d.kind))];
  const perKind = kinds.map((kind) => {
    const subset = docs.filter((d) => d.kind === kind);
    const bytes = subset.reduce((n, d) => n + d.body.length, 0);
    const scanSubset = () => {
      for (const d of subset)
        scanner.scanRequest({ url: 'https://api.example.com/v1/x', headers: { 'content-type': d.contentType }, body: d.body });
    };
    scanSubset();
    const cpu = median(Array.from({ length: 3 }, () => timeBoth(scanSubset).cpu));
    return `${kind} ${((100 * bytes) / totalBytes).toFixed(0)}%: ${mbps(bytes, cpu)}`;
  });
  console.log(`    per document kind (share of bytes: MB/s per CPU time): ${perKind.join('; ')}`);
  // Fingerprints without json forms (what services/vault/src/fingerprint.ts emits today): the scanner
  // cannot rule out JSON-escaped characters in secrets with a percent form and unescapes all JSON.
  const conservative = new LeakScanner();
  conservative.setFingerprints(fingerprints.map((f) => ({ ...f, forms: f.forms.filter((x) => x.encoding !== 'json') })));
  const scanConservative = () => {
    for (const d of docs)
      conservative.scanRequest({ url: 'https://api.example.com/v1/x', headers: { 'content-type': d.contentType }, body: d.body });
  };
  scanConservative();
  const consCpu = median(Array.from({ length: 3 }, () => timeBoth(scanConservative).cpu));
  console.log(
    `    with fingerprints lacking json forms (JSON-sensitive: ${conservative.exactMatcher.jsonSensitive}): ${mbps(totalBytes, consCpu)} MB/s per CPU time`,
  );
  const gzDocs = docs
    .slice(0, Math.ceil(docs.length / 4))
    .map((d) => ({ ...d, body: gzipSync(d.body, { level: zlibConstants.Z_BEST_SPEED }) }));
  const gzBytes = docs.slice(0, gzDocs.length).reduce((n, d) => n + d.body.length, 0);
  const gzRuns: number[] = [];
  for (let i = 0; i < 4; i++)
    gzRuns.push(
      timeMs(() => {
        for (const d of gzDocs)
          scanner.scanRequest({
            url: 'https://api.example.com/upload',
            headers: { 'content-type': d.contentType, 'content-encoding': 'gzip' },
            body: d.body,
          });
      }),
    );
  gzRuns.shift();
  console.log(
    `    same documents gzip-encoded (${(gzBytes / 1e6).toFixed(1)} MB uncompressed): ${mbps(gzBytes, median(gzRuns))} MB/s of uncompressed body`,
  );
}

// (a2) the newer layers: clean documents they work on, and documents carrying a leak in each carrier
if (PARTS.includes('a')) {
  const token = RULE_FIXTURES.github_pat!.positives[0]!;
  const secret = chars(ALNUM, 32);
  const carrierScanner = new LeakScanner();
  carrierScanner.setFingerprints([...fingerprints, fingerprintSecret('bench_canary', Buffer.from(secret))]);
  const spaced = (s: string, sep: string) => [...s].join(sep);
  const rot = (s: string) =>
    s.replace(/[a-z]/gi, (c) => String.fromCharCode(((c.toLowerCase().charCodeAt(0) - 97 + 13) % 26) + (c <= 'Z' ? 65 : 97)));
  const html = (s: string) => [...s].map((c) => `&#${c.charCodeAt(0)};`).join('');
  const halves = (s: string) => [s.slice(0, s.length >> 1), s.slice(s.length >> 1)];
  const MULTI = [
    'Grüße aus Köln',
    '東京の天気は晴れです！（本当に）',
    'Привет, как дела?',
    'مرحبا بالعالم',
    'naïve café, 10\u00a0€…',
    'weather 🌤️ family 👨‍👩‍👧',
    'señor, façade, smörgåsbord',
  ];
  const multilingual = (): string =>
    JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `Acme™ notes. ${prose(int(500, 3000)).replace(/\. /g, () => `. ${pick(MULTI)} `)}` }],
    });
  const htmlPage = (): string =>
    `<!doctype html><html><body>${Array.from({ length: int(10, 60) }, () => `<p class="x">${sentence().replace(/ and /g, ' &amp; ')} &mdash; &#8220;${pick(WORDS)}&#8221; <a href="https://docs.example.com/?a=1&amp;b=2">${pick(WORDS)}</a></p>`).join('\n')}</body></html>`;
  const carriers: Array<[string, (leak: string) => string]> = [
    ['zero-width', (l) => spaced(l, '\u200b')],
    ['fullwidth', (l) => [...l].map((c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).join('')],
    ['reversed', (l) => [...l].reverse().join('')],
    ['rot13', rot],
    ['base32', (l) => Buffer.from(l).toString('hex').toUpperCase()], // replaced below by real base32
    ['html', html],
    ['utf16le', (l) => Buffer.from(`k=${l}`, 'utf16le').toString('base64')],
    ['separated', (l) => spaced(l, ' ')],
  ];
  const b32 = (b: Buffer) => {
    const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    let bits = 0;
    let v = 0;
    let out = '';
    for (const x of b) {
      v = (v << 8) | x;
      bits += 8;
      while (bits >= 5) out += A[(v >> (bits -= 5)) & 31];
    }
    return bits > 0 ? out + A[(v << (5 - bits)) & 31] : out;
  };
  carriers[4] = ['base32', (l) => b32(Buffer.from(` ${l}`))];
  const leaky: Doc[] = [];
  for (let i = 0; i < 200; i++) {
    const leak = i % 2 === 0 ? token : secret;
    const [name, wrap] = carriers[i % carriers.length]!;
    const [a, b] = halves(leak);
    const body =
      i % 5 === 0
        ? JSON.stringify({ model: 'gpt-4o-mini', a, b, messages: [{ role: 'user', content: prose(int(500, 3000)) }] })
        : JSON.stringify({
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: `${prose(int(500, 3000))} ${wrap(leak)} ${prose(200)}` }],
          });
    leaky.push({ kind: i % 5 === 0 ? 'split JSON' : name, contentType: 'application/json', body: Buffer.from(body) });
  }
  const clean: Doc[] = [];
  for (let i = 0; i < 120; i++)
    clean.push(
      i % 2 === 0
        ? { kind: 'multilingual', contentType: 'application/json', body: Buffer.from(multilingual()) }
        : { kind: 'HTML', contentType: 'text/html', body: Buffer.from(htmlPage()) },
    );
  const measure = (set: Doc[]) => {
    const bytes = set.reduce((n, d) => n + d.body.length, 0);
    let found = 0;
    const scan = () => {
      found = 0;
      for (const d of set)
        if (
          carrierScanner.scanRequest({ url: 'https://api.example.com/v1/x', headers: { 'content-type': d.contentType }, body: d.body })
            .length > 0
        )
          found++;
    };
    scan();
    const cpu = median(Array.from({ length: 5 }, () => timeBoth(scan).cpu));
    return { mb: mbps(bytes, cpu), found, bytes };
  };
  const c = measure(clean);
  const l = measure(leaky);
  console.log(
    `\n(a2) newer layers: clean multilingual chat and HTML (${(c.bytes / 1e6).toFixed(1)} MB): ${c.mb} MB/s per CPU time, ` +
      `${c.found} of ${clean.length} flagged; documents with one leak in a carrier (${(l.bytes / 1e6).toFixed(1)} MB): ` +
      `${l.mb} MB/s, ${l.found} of ${leaky.length} caught`,
  );
  const redactMs = timeBoth(() => {
    for (const d of leaky.slice(0, 50)) redactText(carrierScanner, d.body.toString());
  }).cpu;
  console.log(`    redactText on 50 of them: ${(redactMs / 50).toFixed(2)} ms each (CPU)`);
}

// (b) near misses
if (PARTS.includes('b')) {
  console.log(
    `\n(b) slowest ${NEAR_MISS_BYTES / 1024} KB near-miss input per rule (wall median and max of 5 runs; CPU median)   [target < 20 ms]`,
  );
  const rows: Array<{ id: string; ms: number; max: number; cpu: number; input: string; findings: number }> = [];
  for (const rule of BUILTIN_RULES) {
    const fx = RULE_FIXTURES[rule.id];
    const inputs: Array<[string, string]> = [];
    if (fx) {
      inputs.push(['near-misses, spaced', repeatTo(fx.nearMisses.join(' ') + ' ', NEAR_MISS_BYTES)]);
      inputs.push(['near-misses, glued', repeatTo(fx.nearMisses.join(''), NEAR_MISS_BYTES)]);
      inputs.push(['positives minus last char', repeatTo(fx.positives.map((p) => p.slice(0, -1)).join(' ') + ' ', NEAR_MISS_BYTES)]);
      for (const [i, w] of (fx.worst ?? []).entries()) inputs.push([`crafted #${i + 1}`, repeatTo(w, NEAR_MISS_BYTES)]);
    }
    for (const lit of (rule.literals ?? []).slice(0, 4)) {
      inputs.push([`"${lit}" repeated`, repeatTo(lit, NEAR_MISS_BYTES)]);
      inputs.push([`"${lit}" + long run`, repeatTo(lit + 'A'.repeat(300) + ' ', NEAR_MISS_BYTES)]);
    }
    let worst = { ms: -1, max: 0, cpu: 0, input: '', findings: 0 };
    for (const [label, text] of inputs) {
      const body = Buffer.from(text, 'latin1');
      let n = 0;
      scanner.scanText(body, 'body');
      const times = Array.from({ length: 5 }, () => timeBoth(() => (n = scanner.scanText(body, 'body').length)));
      const m = median(times.map((t) => t.wall));
      if (m > worst.ms)
        worst = { ms: m, max: Math.max(...times.map((t) => t.wall)), cpu: median(times.map((t) => t.cpu)), input: label, findings: n };
    }
    rows.push({ id: rule.id, ...worst });
  }
  // Inputs crafted against the newer layers (labelled "layer:" in place of a rule id).
  const rep = (u: string) => repeatTo(u, NEAR_MISS_BYTES);
  const layerInputs: Array<[string, string, 'body' | 'url']> = [
    ['layer:reversed', rep('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_phg '), 'body'],
    ['layer:rot13', rep('tuc_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa '), 'body'],
    ['layer:separated', rep('g h p _ '), 'body'],
    ['layer:html', rep('&amp;#103;&#x68;'), 'body'],
    ['layer:unicode zero-width', rep('g\u200b'), 'body'],
    ['layer:unicode NFKC expansion', rep('\ufdfa'), 'body'],
    ['layer:base32', rep('MZXW6YTBOI2345'), 'body'],
    ['layer:utf16', Buffer.from(rep('ghp_a'), 'utf16le').toString('base64'), 'body'],
    ['layer:json values', `[${rep('"gh","p_",')}"x"]`, 'body'],
    ['layer:json literal values', `[${rep('"xghp_aaaa",')}"x"]`, 'body'],
    ['layer:query values', `https://h.example/x?${rep('a=ghp_&')}`, 'url'],
  ];
  for (const [id, text, location] of layerInputs) {
    const body = Buffer.from(text);
    scanner.scanText(body, location);
    let n = 0;
    const times = Array.from({ length: 5 }, () => timeBoth(() => (n = scanner.scanText(body, location).length)));
    rows.push({
      id,
      ms: median(times.map((t) => t.wall)),
      max: Math.max(...times.map((t) => t.wall)),
      cpu: median(times.map((t) => t.cpu)),
      input: `${(body.length / 1024).toFixed(0)} KB crafted`,
      findings: n,
    });
  }
  const idWidth = Math.max(...rows.map((r) => r.id.length));
  console.log(`    ${'rule'.padEnd(idWidth)}  median ms  max ms  CPU ms  slowest input`);
  for (const r of rows)
    console.log(
      `    ${r.id.padEnd(idWidth)}  ${r.ms.toFixed(2).padStart(9)}  ${r.max.toFixed(2).padStart(6)}  ${r.cpu.toFixed(2).padStart(6)}  ${r.input}${r.findings ? ` (${r.findings} findings)` : ''}`,
    );
  const slowest = rows.reduce((a, b) => (b.ms > a.ms ? b : a));
  console.log(
    `    slowest rule: ${slowest.id} ${slowest.ms.toFixed(2)} ms (max ${slowest.max.toFixed(2)} ms, CPU ${slowest.cpu.toFixed(2)} ms); ` +
      `rules over 20 ms: ${rows.filter((r) => r.ms >= 20).length} by wall median, ${rows.filter((r) => r.cpu >= 20).length} by CPU`,
  );
}

// (c) exact matcher and redactor alone
if (PARTS.includes('c')) {
  const flat = Buffer.concat(docs.map((d) => d.body));
  const matcher = new ExactMatcher(fingerprints);
  matcher.scan(flat);
  const exactRuns: number[] = [];
  let exactHits = 0;
  for (let i = 0; i < 5; i++) exactRuns.push(timeMs(() => (exactHits = matcher.scan(flat).length)));
  console.log(
    `\n(c) ExactMatcher.scan, ${matcher.formCount} forms, ${(flat.length / 1e6).toFixed(1)} MB: ${mbps(flat.length, median(exactRuns))} MB/s (matches: ${exactHits})`,
  );

  const prefixFlood = Buffer.alloc(NEAR_MISS_BYTES);
  const someForm = fingerprints[1]!.forms[0]!;
  for (let i = 0; i + 4 <= prefixFlood.length; i += 4) prefixFlood.set(someForm.prefix, i);
  const floodMs = median(Array.from({ length: 5 }, () => timeMs(() => matcher.scan(prefixFlood))));
  console.log(
    `    adversarial: ${NEAR_MISS_BYTES / 1024} KB of one secret's 4-byte prefix repeated (a SHA-256 per offset): ${floodMs.toFixed(2)} ms`,
  );

  const redactRuns: number[] = [];
  for (let r = 0; r < 4; r++)
    redactRuns.push(
      timeMs(() => {
        const red = new ResponseRedactor(matcher);
        for (let off = 0; off < flat.length; off += 16 * 1024) red.push(flat.subarray(off, off + 16 * 1024));
        red.end();
      }),
    );
  redactRuns.shift();
  console.log(`    ResponseRedactor, 16 KiB chunks: ${mbps(flat.length, median(redactRuns))} MB/s`);
}

// (d) one large body
if (PARTS.includes('d')) {
  const SIZE = 256 * 1024;
  const fill = (make: () => string): Buffer => {
    let s = '';
    while (s.length < SIZE) s += make();
    return Buffer.from(s.slice(0, SIZE));
  };
  const bodies: Array<[string, string, Buffer]> = [
    ["one character ('a') repeated, as bench:egress sends", 'application/octet-stream', Buffer.alloc(SIZE, 'a')],
    ['chat JSON', 'application/json', fill(chatPayload)],
    ['base64 upload in JSON', 'application/json', fill(base64Payload)],
    [
      'mix: prose, a base64 attachment and hex digests in JSON',
      'application/json',
      Buffer.from(
        JSON.stringify({
          messages: [{ role: 'user', content: prose(SIZE / 2) }],
          attachment: randomLike(SIZE / 4).toString('base64'),
          digests: Array.from({ length: 64 }, () => chars(HEX, 64)),
        }),
      ),
    ],
  ];
  console.log(`\n(d) one ${SIZE / 1024} KiB body, as egress scans it (CPU median of 15 rounds of 10 scans)`);
  for (const [label, contentType, body] of bodies) {
    const r = { url: 'http://127.0.0.1:8080/echo', headers: { 'content-type': contentType, authorization: 'Bearer {{secret:x}}' }, body };
    for (let i = 0; i < 20; i++) scanner.scanRequest(r);
    const ms = median(
      Array.from(
        { length: 15 },
        () =>
          timeBoth(() => {
            for (let i = 0; i < 10; i++) scanner.scanRequest(r);
          }).cpu / 10,
      ),
    );
    console.log(`    ${label}: ${ms.toFixed(3)} ms per scan, ${mbps(body.length, ms)} MB/s`);
  }
}
