import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { brotliCompressSync, deflateSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { encodedForms, fingerprintSecret } from './fingerprint.ts';
import { BUILTIN_RULES } from './rules.ts';
import { RULE_FIXTURES } from './rule-fixtures.ts';
import {
  CONTENT_DECODING_FAILED,
  CONTENT_ENCODING_UNSUPPORTED,
  INCOMPLETE_SCAN_IDS,
  InvalidScannerOptions,
  LeakScanner,
  SCAN_LIMIT_EXCEEDED,
  type ScanFinding,
  type ScanRequestInput,
} from './scanner.ts';

// Vault secrets (fake, built at run time) and a rule-shaped token from the fixtures.
const CANARY = 'canary-7Hq2Zx9Lm4Tp';
const SPACED = 'correct horse battery staple';
const QUOTED = 'he said "hi" \\ then left';
const SLASHED = 'abc/def/ghi/jkl';
const UNICODE = 'pässwörd-ünïcode';
const TOKEN = RULE_FIXTURES.github_pat!.positives[0]!;

function scannerWith(names: Record<string, string>, opts: ConstructorParameters<typeof LeakScanner>[0] = {}): LeakScanner {
  const s = new LeakScanner(opts);
  s.setFingerprints(Object.entries(names).map(([name, v]) => fingerprintSecret(name, Buffer.from(v))));
  return s;
}

const scanner = scannerWith({ canary: CANARY, spaced: SPACED, quoted: QUOTED, slashed: SLASHED, unicode: UNICODE });

function req(
  body: string | Buffer,
  headers: ScanRequestInput['headers'] = {},
  url = 'https://api.example.com/v1/things',
): ScanRequestInput {
  return { url, headers, body: typeof body === 'string' ? Buffer.from(body) : body };
}

function find(findings: ScanFinding[], id: string): ScanFinding | undefined {
  return findings.find((f) => f.id === id);
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
/** Percent-encodes every byte, so no run of the original survives in the raw text. */
const pctAll = (s: string) => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
/** JSON \u-escapes every character. */
const uAll = (s: string) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');

describe('LeakScanner.scanRequest', () => {
  it('reports the location and header of each finding', () => {
    const findings = scanner.scanRequest(
      req(
        `body has ${CANARY}`,
        { 'X-Api-Key': CANARY, 'X-Debug': `token ${TOKEN}`, 'content-type': 'text/plain' },
        `https://api.example.com/x?q=${CANARY}&q2=${CANARY}`,
      ),
    );
    assert.deepEqual(findings, [
      { kind: 'secret', id: 'canary', location: 'url', encoding: 'raw' },
      { kind: 'secret', id: 'canary', location: 'header', field: 'x-api-key', encoding: 'raw' },
      { kind: 'rule', id: 'github_pat', location: 'header', field: 'x-debug', encoding: 'raw' },
      { kind: 'secret', id: 'canary', location: 'body', encoding: 'raw' },
    ]);
  });

  it('finds a vault secret in every fingerprinted form', () => {
    for (const [name, value] of Object.entries({ canary: CANARY, quoted: QUOTED, slashed: SLASHED, unicode: UNICODE }))
      for (const { encoding, bytes } of encodedForms(Buffer.from(value))) {
        const f = find(scanner.scanRequest(req(Buffer.concat([Buffer.from('value: '), bytes, Buffer.from(' end')]))), name);
        assert.ok(f, `${name} as ${encoding}`);
        assert.equal(f.kind, 'secret');
        // Found as the form itself (a json form equal to raw is the raw value), or by decoding it back.
        const asIs = bytes.equals(Buffer.from(value)) ? 'raw' : encoding;
        assert.ok(f.encoding === asIs || f.encoding.endsWith(encoding.replace('_upper', '')), `${name} ${encoding}: ${f.encoding}`);
      }
  });

  it('looks through percent-encoding, JSON escapes, base64, base64url and hex', () => {
    const urlSafe = Buffer.concat([Buffer.from(`token=${TOKEN}&`), Buffer.from([0xfb, 0xff, 0xfe])]).toString('base64url');
    assert.match(urlSafe, /[-_]/, 'precondition: uses the url-safe alphabet');
    const cases: Array<[string, string]> = [
      [`q=${pctAll(TOKEN)}`, 'percent'],
      [`{"t":"${uAll(TOKEN)}"}`, 'json'],
      [`{"blob":"${b64(`token=${TOKEN}`)}"}`, 'base64'],
      [`{"blob":"${urlSafe}"}`, 'base64url'],
      [`{"blob":"${Buffer.from(`token=${TOKEN}`).toString('hex')}"}`, 'hex'],
      [`q=${pctAll(b64(`token=${TOKEN}`))}`, 'percent>base64'],
      [`{"a":"${b64(b64(`token=${TOKEN}`))}"}`, 'base64>base64'],
    ];
    for (const [body, encoding] of cases) {
      const f = find(scanner.scanRequest(req(body, { 'content-type': 'text/plain' })), 'github_pat');
      assert.equal(f?.encoding, encoding, encoding);
    }
  });

  it('undoes Content-Encoding gzip, x-gzip, deflate, br, zstd and stacked codings', () => {
    const body = Buffer.from(JSON.stringify({ note: `use ${TOKEN}`, pw: CANARY }));
    for (const [coding, data, chain] of [
      ['gzip', gzipSync(body), 'gzip'],
      ['x-gzip', gzipSync(body), 'gzip'],
      ['deflate', deflateSync(body), 'deflate'],
      ['br', brotliCompressSync(body), 'br'],
      ['zstd', zstdCompressSync(body), 'zstd'],
      ['gzip, br', brotliCompressSync(gzipSync(body)), 'br>gzip'],
    ] as const) {
      const findings = scanner.scanRequest(req(data, { 'Content-Encoding': coding }));
      assert.equal(find(findings, 'github_pat')?.encoding, chain, coding);
      assert.equal(find(findings, 'canary')?.encoding, chain, coding);
    }
  });

  it('reports the whole decode chain, e.g. gzip>percent>base64', () => {
    const inner = `q=${pctAll(b64(`token=${TOKEN}`))}`;
    const f = find(scanner.scanRequest(req(gzipSync(inner), { 'content-encoding': 'gzip', 'content-type': 'text/plain' })), 'github_pat');
    assert.equal(f?.encoding, 'gzip>percent>base64');
  });

  it('decodes form bodies with + as a space', () => {
    const body = `user=a&pw=${encodeURIComponent(SPACED).replace(/%20/g, '+')}`;
    assert.equal(find(scanner.scanRequest(req(body, { 'content-type': 'application/x-www-form-urlencoded' })), 'spaced')?.encoding, 'form');
    const url = `https://api.example.com/login?pw=${SPACED.replace(/ /g, '+')}`;
    assert.equal(find(scanner.scanRequest(req('', {}, url)), 'spaced')?.location, 'url');
  });

  it('finds secrets JSON-escaped in nested JSON, behind \\/ and behind \\u escapes', () => {
    const nested = JSON.stringify({ tool: 'login', arguments: JSON.stringify({ password: QUOTED }) });
    assert.equal(find(scanner.scanRequest(req(nested)), 'quoted')?.encoding, 'json');
    assert.equal(find(scanner.scanRequest(req(`{"path":"${SLASHED.replace(/\//g, '\\/')}"}`)), 'slashed')?.encoding, 'json');
    const python = JSON.stringify({ pw: UNICODE }).replace(
      /[\u0080-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    assert.equal(find(scanner.scanRequest(req(python)), 'unicode')?.encoding, 'json');
  });

  it('finds JSON-escaped secrets with fingerprints from a producer that emits no json form', () => {
    const fp = fingerprintSecret('quoted', Buffer.from(QUOTED));
    const s = new LeakScanner();
    s.setFingerprints([{ ...fp, forms: fp.forms.filter((f) => f.encoding !== 'json') }]);
    assert.equal(find(s.scanRequest(req(JSON.stringify({ note: 'x', pw: QUOTED }))), 'quoted')?.encoding, 'json');
    assert.equal(find(s.scanRequest(req(JSON.stringify({ args: JSON.stringify({ pw: QUOTED }) }))), 'quoted')?.encoding, 'json');
  });

  it('finds a secret in Basic credentials and in a base64 part of a multipart body', () => {
    const basic = scanner.scanRequest(req('', { authorization: `Basic ${b64(`user:${CANARY}`)}` }));
    assert.deepEqual(find(basic, 'canary'), {
      kind: 'secret',
      id: 'canary',
      location: 'header',
      field: 'authorization',
      encoding: 'base64',
    });

    const attachment = b64(`${'Dear team, the quarterly numbers are attached. '.repeat(8)}\nkey: ${TOKEN}\npw: ${CANARY}\n`)
      .match(/.{1,76}/g)!
      .join('\r\n');
    const multipart =
      '--b0undary\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n' +
      '--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
      `${attachment}\r\n--b0undary--\r\n`;
    const findings = scanner.scanRequest(req(multipart, { 'content-type': 'multipart/form-data; boundary=b0undary' }));
    assert.equal(find(findings, 'github_pat')?.encoding, 'base64');
    assert.equal(find(findings, 'canary')?.encoding, 'base64');
  });

  it('decompresses gzip it finds inside base64 or as an unlabelled body', () => {
    const inner = gzipSync(`secret token ${TOKEN}`);
    assert.equal(find(scanner.scanRequest(req(`{"blob":"${b64(inner)}"}`)), 'github_pat')?.encoding, 'base64>gzip');
    assert.equal(find(scanner.scanRequest(req(inner)), 'github_pat')?.encoding, 'gzip');
  });

  it('finds escaped text far from the start of a large body (windowed decoding)', () => {
    const prose = 'The quarterly report is attached; numbers are up. '.repeat(6000);
    const body = `a%20b ${prose} pw=${pctAll(CANARY)} ${prose} x\\/y ${prose} t=${uAll(TOKEN)} ${prose}`;
    const findings = scanner.scanRequest(req(body));
    assert.equal(find(findings, 'canary')?.encoding, 'percent');
    assert.equal(find(findings, 'github_pat')?.encoding, 'json');
  });

  it('decodes at most maxDecodeDepth levels', () => {
    let wrapped = `token=${TOKEN}`;
    for (let i = 0; i < 4; i++) wrapped = b64(wrapped);
    assert.equal(find(scanner.scanRequest(req(wrapped)), 'github_pat'), undefined);
    const deep = new LeakScanner({ maxDecodeDepth: 4 });
    assert.equal(find(deep.scanRequest(req(wrapped)), 'github_pat')?.encoding, 'base64>base64>base64>base64');
    assert.deepEqual(new LeakScanner({ maxDecodeDepth: 0 }).scanRequest(req(b64(`token=${TOKEN}`))), []);
  });

  it('reports each (kind, id, location, field) once, with the shallowest chain', () => {
    const body = `${CANARY} ${CANARY} ${b64(CANARY)} ${TOKEN} ${TOKEN}`;
    const findings = scanner.scanRequest(req(body));
    assert.deepEqual(
      findings.map((f) => `${f.kind}:${f.id}:${f.encoding}`),
      ['secret:canary:raw', 'rule:github_pat:raw'],
    );
  });
});

describe('scan limits (fail closed)', () => {
  it('reports a decompression bomb instead of inflating it', () => {
    const bomb = gzipSync(Buffer.alloc(64 << 20)); // 64 MiB of zeros in ~64 KiB
    const s = new LeakScanner({ maxDecompressedBytes: 1 << 20 });
    const started = Date.now();
    const findings = s.scanRequest(req(bomb, { 'content-encoding': 'gzip' }));
    assert.deepEqual(findings, [{ kind: 'rule', id: SCAN_LIMIT_EXCEEDED, location: 'body', encoding: 'gzip' }]);
    assert.ok(Date.now() - started < 2000, 'stopped early');
    // The default cap (maxScanBytes, 16 MiB) also stops it.
    assert.equal(find(new LeakScanner().scanRequest(req(bomb, { 'content-encoding': 'gzip' })), SCAN_LIMIT_EXCEEDED)?.encoding, 'gzip');
  });

  it('reports a bomb hidden in base64 inside the body', () => {
    const body = `{"blob":"${b64(gzipSync(Buffer.alloc(32 << 20)))}"}`;
    const f = find(new LeakScanner({ maxDecompressedBytes: 1 << 20 }).scanRequest(req(body)), SCAN_LIMIT_EXCEEDED);
    assert.equal(f?.encoding, 'base64>gzip');
  });

  it('reports a body over maxScanBytes, and decoded layers over maxDecodedBytes', () => {
    const s = new LeakScanner({ maxScanBytes: 1024, maxDecodedBytes: 2048 });
    assert.deepEqual(s.scanRequest(req(Buffer.alloc(1025, 0x61))), [
      { kind: 'rule', id: SCAN_LIMIT_EXCEEDED, location: 'body', encoding: 'raw' },
    ]);
    assert.deepEqual(s.scanText('x'.repeat(1025), 'body'), [{ kind: 'rule', id: SCAN_LIMIT_EXCEEDED, location: 'body', encoding: 'raw' }]);
    // The body fits, but its decoded layers (933 then 700 bytes) do not fit 1000 bytes together.
    const layered = new LeakScanner({ maxScanBytes: 4096, maxDecodedBytes: 1000 });
    assert.equal(find(layered.scanRequest(req(b64(b64('y'.repeat(700))))), SCAN_LIMIT_EXCEEDED)?.encoding, 'base64>base64');
  });

  it('reports codings it cannot undo and corrupt data', () => {
    assert.deepEqual(scanner.scanRequest(req('abc', { 'content-encoding': 'compress' })), [
      { kind: 'rule', id: CONTENT_ENCODING_UNSUPPORTED, location: 'body', encoding: 'compress' },
    ]);
    assert.deepEqual(scanner.scanRequest(req('not really gzip', { 'content-encoding': 'gzip' })), [
      { kind: 'rule', id: CONTENT_DECODING_FAILED, location: 'body', encoding: 'gzip' },
    ]);
    for (const id of [SCAN_LIMIT_EXCEEDED, CONTENT_DECODING_FAILED, CONTENT_ENCODING_UNSUPPORTED]) assert.ok(INCOMPLETE_SCAN_IDS.has(id));
  });
});

describe('placeholders and secrecy', () => {
  it('does not flag {{secret:NAME}} placeholders anywhere, even named like the rules', () => {
    const names = [...BUILTIN_RULES.map((r) => r.id), 'llm_api_key', 'telegram_bot_token', 'aws_secret_access_key'];
    const s = scannerWith(Object.fromEntries(names.map((n) => [n, `value-of-${n}-0123456789`])));
    const placeholders = names.map((n) => `{{secret:${n}}}`);
    const findings = s.scanRequest({
      url: `https://api.telegram.org/bot{{secret:telegram_bot_token}}/sendMessage?key={{secret:google_api_key}}`,
      headers: {
        authorization: 'Bearer {{secret:llm_api_key}}',
        'x-api-key': '{{secret:anthropic_api_key}}',
        aws_secret_access_key: '{{secret:aws_secret_access_key}}',
        'content-type': 'application/json',
      },
      body: Buffer.from(
        JSON.stringify({
          all: placeholders,
          env: names.map((n) => `${n.toUpperCase()}={{secret:${n}}}`).join('\n'),
          yaml: names.map((n) => `${n}: "{{secret:${n}}}"`).join('\n'),
          encoded: encodeURIComponent(placeholders.join('&')),
        }),
      ),
    });
    assert.deepEqual(findings, []);
    const form = placeholders.map((p, i) => `k${i}=${encodeURIComponent(p)}`).join('&');
    assert.deepEqual(s.scanRequest(req(form, { 'content-type': 'application/x-www-form-urlencoded' })), []);
  });

  it('never puts the secret, any encoded form of it, or a matched token into findings', () => {
    const forms = [CANARY, QUOTED, UNICODE].flatMap((v) => encodedForms(Buffer.from(v)).map((f) => f.bytes.toString('latin1')));
    const tokens = BUILTIN_RULES.flatMap((r) => RULE_FIXTURES[r.id]!.positives);
    const body = JSON.stringify({ forms, tokens, nested: b64(JSON.stringify({ forms, tokens })) });
    const findings = scanner.scanRequest(
      req(gzipSync(body), { 'content-encoding': 'gzip', authorization: `Basic ${b64(`u:${CANARY}`)}` }, `https://x.example/?k=${CANARY}`),
    );
    assert.ok(findings.length > 50, 'the request is full of leaks');
    const serialized = JSON.stringify(findings);
    for (const f of forms) assert.ok(!serialized.includes(f), 'a secret form leaked into findings');
    for (const t of tokens) assert.ok(!serialized.includes(t), 'a matched token leaked into findings');
    for (const f of findings)
      assert.deepEqual(
        Object.keys(f).filter((k) => !['kind', 'id', 'location', 'field', 'encoding'].includes(k)),
        [],
      );
  });
});

describe('robustness', () => {
  it('never throws on random or hostile input, and findings stay well-formed', () => {
    let seed = 2024;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
    const pieces = [
      '%',
      '%4',
      '%41',
      '\\',
      '\\u',
      '\\ud83d',
      '\\x4',
      '+',
      '=',
      '==',
      '\r\n',
      '\\n',
      '-----BEGIN ',
      'eyJ',
      'AKIA',
      'sk-',
      ':AA',
      'Q~',
    ];
    for (let t = 0; t < 300; t++) {
      const parts: Buffer[] = [];
      for (let i = rnd() % 40; i > 0; i--) {
        const r = rnd() % 4;
        if (r === 0) parts.push(Buffer.from(Array.from({ length: rnd() % 64 }, () => rnd() % 256)));
        else if (r === 1) parts.push(Buffer.from(pieces[rnd() % pieces.length]!));
        else if (r === 2) parts.push(Buffer.from(b64(Buffer.from(Array.from({ length: rnd() % 96 }, () => rnd() % 256)))));
        else parts.push(gzipSync(Buffer.from(`x${rnd()}`)).subarray(0, rnd() % 30));
      }
      const body = Buffer.concat(parts);
      const coding = ['', 'gzip', 'br', 'deflate', 'zstd', 'identity', 'gzip, gzip', 'bogus'][rnd() % 8]!;
      const findings = scanner.scanRequest({
        url: `https://h.example/${body.toString('latin1').slice(0, 40)}`,
        headers: { 'content-encoding': coding || undefined, 'x-raw': body.toString('latin1').slice(0, 100) },
        body,
      });
      for (const f of findings) {
        assert.ok(['rule', 'secret'].includes(f.kind) && typeof f.id === 'string' && typeof f.encoding === 'string');
        assert.ok(['url', 'header', 'body'].includes(f.location));
      }
    }
  });
});

describe('LeakScanner configuration', () => {
  it('validates its options', () => {
    assert.throws(() => new LeakScanner({ maxScanBytes: 0 }), InvalidScannerOptions);
    assert.throws(() => new LeakScanner({ maxDecodedBytes: 1.5 }), InvalidScannerOptions);
    assert.throws(() => new LeakScanner({ maxDecodeDepth: 9 }), /maxDecodeDepth/);
  });

  it('replaces the exact-match index on setFingerprints', () => {
    const s = scannerWith({ canary: CANARY });
    assert.equal(s.scanText(CANARY, 'body').length, 1);
    s.setFingerprints([fingerprintSecret('other', Buffer.from('a-different-value'))]);
    assert.deepEqual(s.scanText(CANARY, 'body'), []);
    assert.deepEqual(s.exactMatcher.secretNames, ['other']);
    assert.equal(s.ruleIds.length, BUILTIN_RULES.length);
  });

  it('scans bytes and strings alike, with an optional field', () => {
    assert.deepEqual(scanner.scanText(Buffer.from(`x ${CANARY}`), 'header', 'cookie'), [
      { kind: 'secret', id: 'canary', location: 'header', field: 'cookie', encoding: 'raw' },
    ]);
    assert.deepEqual(scanner.scanText('', 'body'), []);
  });

  it('matches context rules across a header name and its value', () => {
    const value = RULE_FIXTURES.aws_secret_access_key!.positives[0]!.split(' = ')[1]!;
    const f = scanner.scanRequest(req('', { aws_secret_access_key: value }));
    assert.deepEqual(f, [
      { kind: 'rule', id: 'aws_secret_access_key', location: 'header', field: 'aws_secret_access_key', encoding: 'raw' },
    ]);
  });
});

// ------------------------------------------------------------------ carriers beyond encodings
// Each case names the layer that must reveal it: without that layer the finding is gone.

/** `s` with `sep` between every character. */
const interleave = (s: string, sep: string) => [...s].join(sep);
const fullwidth = (s: string) => [...s].map((c) => (c >= '!' && c <= '~' ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c)).join('');
const backwards = (s: string) => [...s].reverse().join('');
const rot13 = (s: string) =>
  s.replace(/[a-z]/gi, (c) => String.fromCharCode(((c.toLowerCase().charCodeAt(0) - 97 + 13) % 26) + (c <= 'Z' ? 65 : 97)));
function base32(b: Buffer, lower = false, pad = true): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let v = 0;
  let out = '';
  for (const x of b) {
    v = (v << 8) | x;
    bits += 8;
    while (bits >= 5) out += A[(v >> (bits -= 5)) & 31];
  }
  if (bits > 0) out += A[(v << (5 - bits)) & 31];
  while (pad && out.length % 8) out += '=';
  return lower ? out.toLowerCase() : out;
}

/** Both the rule and the vault secret are found in `body`, each by the chain `encoding`. */
function foundBoth(body: string, encoding: string, s = scanner) {
  const findings = s.scanRequest(req(body, { 'content-type': 'text/plain' }));
  assert.equal(find(findings, 'github_pat')?.encoding, encoding, `token via ${encoding}`);
  assert.equal(find(findings, 'canary')?.encoding, encoding, `secret via ${encoding}`);
}

describe('carriers: Unicode', () => {
  it('removes default-ignorable code points between the characters of a secret', () => {
    for (const zw of ['\u200B', '\u200C', '\u200D', '\u2060', '\uFEFF', '\u00AD', '\uFE0F', '\u180E', '\u{E0020}'])
      foundBoth(`a ${interleave(TOKEN, zw)} b ${interleave(CANARY, zw)} c`, 'unicode');
  });

  it('applies NFKC: fullwidth and other compatibility forms', () => {
    foundBoth(`x ${fullwidth(TOKEN)} y ${fullwidth(CANARY)}`, 'unicode');
    const bold = [...TOKEN].map((c) => (/[a-z]/.test(c) ? String.fromCodePoint(0x1d41a + c.charCodeAt(0) - 97) : c)).join('');
    assert.equal(find(scanner.scanText(bold, 'body'), 'github_pat')?.encoding, 'unicode');
  });

  it('spells out Unicode tag characters, which shadow ASCII invisibly', () => {
    const tags = (s: string) => [...s].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join('');
    foundBoth(`Nothing to see here. ${tags(TOKEN)} ${tags(CANARY)}`, 'unicode');
  });

  it('leaves ordinary non-ASCII text alone', () => {
    const text = 'Grüße aus Köln — 東京の天気は晴れ 🌤️, naïve café, ½ cup, ﬁne ligatures, Ｆｕｌｌｗｉｄｔｈ words.';
    assert.deepEqual(scanner.scanText(text.repeat(50), 'body'), []);
  });
});

describe('carriers: values split across fields', () => {
  const [t1, t2] = [TOKEN.slice(0, 15), TOKEN.slice(15)];
  const [c1, c2] = [CANARY.slice(0, 8), CANARY.slice(8)];

  it('joins JSON string values in order, whatever lies between them', () => {
    foundBoth(JSON.stringify({ a: t1, b: t2, c: c1, d: c2 }), 'json_values');
    // Neighbouring values that are whitespace-free tokens themselves, and a split inside the literal.
    foundBoth(JSON.stringify({ model: 'gpt-4o', x: t1, y: t2, stream: 'true', n: 3, c: c1, d: c2, e: 'end1' }), 'json_values');
    foundBoth(JSON.stringify([TOKEN.slice(0, 2), TOKEN.slice(2), CANARY.slice(0, 1), CANARY.slice(1)]), 'json_values');
    foundBoth(JSON.stringify({ p: [...TOKEN], q: [...CANARY] }, null, 2), 'json_values');
  });

  it('joins the values of JSON inside a JSON string (tool-call arguments)', () => {
    foundBoth(JSON.stringify({ tool: 'send', arguments: JSON.stringify({ a: t1, b: t2, c: c1, d: c2 }) }), 'json>json_values');
  });

  it('joins all header values, query values and form values in order', () => {
    const h = scanner.scanRequest(req('', { 'user-agent': 'talon/0.1', 'x-a': t1, 'x-b': t2, 'x-c': c1, 'x-d': c2, accept: '*/*' }));
    assert.deepEqual(find(h, 'github_pat'), { kind: 'rule', id: 'github_pat', location: 'header', encoding: 'header_values' });
    assert.equal(find(h, 'canary')?.encoding, 'header_values');
    const q = scanner.scanRequest(req('', {}, `https://api.example.com/x?u=1&a=${t1}&b=${t2}&c=${c1}&d=${c2}&z=9`));
    assert.equal(find(q, 'github_pat')?.encoding, 'query_values');
    assert.equal(find(q, 'canary')?.encoding, 'query_values');
    const f = scanner.scanRequest(req(`u=1&a=${t1}&b=${t2}&c=${c1}&d=${c2}`, { 'content-type': 'application/x-www-form-urlencoded' }));
    assert.equal(find(f, 'github_pat')?.encoding, 'form_values');
    assert.equal(find(f, 'canary')?.encoding, 'form_values');
  });

  it('reports a secret wholly inside one header only there, not again as joined', () => {
    const h = scanner.scanRequest(req('', { 'x-a': `token ${TOKEN}`, 'x-b': 'other' }));
    assert.deepEqual(
      h.map((x) => `${x.field}:${x.encoding}`),
      ['x-a:raw'],
    );
  });

  it('does not glue a prose value onto a token that falls short of a format', () => {
    for (const rule of BUILTIN_RULES) {
      for (const near of RULE_FIXTURES[rule.id]!.nearMisses) {
        const body = JSON.stringify({ config: { value: near, note: 'line one\nline two' }, other: 'and some prose here' });
        assert.deepEqual(
          scanner.scanText(body, 'body').map((x) => x.id),
          [],
          `${rule.id}: near miss joined with prose`,
        );
      }
    }
  });
});

describe('carriers: transformations', () => {
  it('reads text backwards', () => {
    foundBoth(`reversed: ${backwards(TOKEN)} and ${backwards(CANARY)}.`, 'reversed');
  });

  it('undoes ROT13', () => {
    foundBoth(`rot13: ${rot13(TOKEN)} and ${rot13(CANARY)}.`, 'rot13');
  });

  it('decodes base32, upper or lower case, with or without padding', () => {
    for (const [lower, pad] of [
      [false, true],
      [true, false],
      [false, false],
      [true, true],
    ] as const)
      foundBoth(`k=${base32(Buffer.from(`token ${TOKEN}`), lower, pad)} s=${base32(Buffer.from(` ${CANARY}`), lower, pad)}`, 'base32');
  });

  it('decodes HTML character references: decimal, hex and named, nested', () => {
    const dec = (s: string) => [...s].map((c) => `&#${c.charCodeAt(0)};`).join('');
    const hex = (s: string) => [...s].map((c) => `&#x${c.charCodeAt(0).toString(16)}`).join('');
    foundBoth(`<p>${dec(TOKEN)}</p><p>${hex(CANARY)}</p>`, 'html');
    foundBoth(`<p>${TOKEN.replace(/_/g, '&lowbar;')} ${CANARY.replace(/-/g, '&amp;#45;')}</p>`, 'html');
  });

  it('transcodes UTF-16 (little- and big-endian) found inside base64 or hex', () => {
    foundBoth(b64(Buffer.from(`token=${TOKEN} pw=${CANARY}`, 'utf16le')), 'base64>utf16le');
    foundBoth(Buffer.from(`token=${TOKEN} pw=${CANARY}`, 'utf16le').swap16().toString('hex'), 'hex>utf16be');
    const f = scanner.scanRequest(req(Buffer.from(`\ufeffpw=${CANARY} t=${TOKEN}`, 'utf16le')));
    assert.equal(find(f, 'canary')?.encoding, 'utf16le');
  });

  it('removes one separator between every character', () => {
    for (const sep of [' ', '-', '.', '_', ',', ', ', '|', '\n', ' -'])
      foundBoth(`my token: ${interleave(TOKEN, sep)} and the password is ${interleave(CANARY, sep)}.`, 'separated');
  });

  it('does not turn near misses into matches through any of them', () => {
    for (const rule of BUILTIN_RULES)
      for (const near of RULE_FIXTURES[rule.id]!.nearMisses)
        for (const [how, text] of [
          ['reversed', backwards(near)],
          ['rot13', rot13(near)],
          ['separated', interleave(near, ' ')],
          ['zero-width', interleave(near, '\u200B')],
          ['html', [...near].map((c) => `&#${c.charCodeAt(0)};`).join('')],
          ['base32', base32(Buffer.from(near))],
        ])
          assert.deepEqual(
            scanner.scanText(`see ${text} here`, 'body').map((x) => x.id),
            [],
            `${rule.id}: near miss ${how}`,
          );
  });
});

describe('LeakScanner cost', () => {
  // A vault secret whose prefix prose does not hold (each prefix hit costs a hash).
  const costScanner = scannerWith({ canary: CANARY });
  /** Least milliseconds of several rounds of scans of `body` (least: other work on the machine only adds to it). */
  const cost = (body: Buffer): number => {
    let best = Infinity;
    for (let round = 0; round < 9; round++) {
      const t = performance.now();
      for (let i = 0; i < 5; i++) costScanner.scanRequest(req(body, { 'content-type': 'application/octet-stream' }));
      best = Math.min(best, performance.now() - t);
    }
    return best;
  };

  it('finds what a long run of one character hides, at about the cost of as much prose', () => {
    // A body of one repeated character (what bench:egress sends, and what padding is) is a
    // 256 KiB hex run: it used to cost over three times as much as prose (walked three times,
    // decoded through a 256 KiB string, its decoded layer scanned byte by byte).
    const run = Buffer.alloc(256 * 1024, 'a');
    const words = 'the agent sent a request to the server and the vault answered with a token for the session ';
    const prose = Buffer.from(words.repeat(Math.ceil(run.length / words.length)).slice(0, run.length));
    cost(run);
    cost(prose);
    // Up to three pairs of measurements, the best ratio kept: a burst of other work on a busy
    // machine during one side of a pair does not decide (it failed this once in CI at 2.10x).
    let ratio = Infinity;
    for (let i = 0; i < 3 && ratio >= 2; i++) ratio = Math.min(ratio, cost(run) / cost(prose));
    // Measured 0.6-1.2 now, 3.3-3.6 before (the bound leaves room for a loaded machine).
    assert.ok(ratio < 2, `a run of one character costs ${ratio.toFixed(2)}x as much as prose`);
    // And the scan still sees through it.
    const hidden = Buffer.concat([run.subarray(0, 100_000), Buffer.from(` ${TOKEN} ${b64(CANARY)} `), run.subarray(0, 100_001)]);
    assert.deepEqual(
      costScanner.scanRequest(req(hidden)).map((f) => `${f.id}@${f.encoding}`),
      ['github_pat@raw', 'canary@base64'],
    );
  });
});
