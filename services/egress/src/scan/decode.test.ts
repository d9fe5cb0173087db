import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync, zstdCompressSync } from 'node:zlib';
import {
  MIN_ENCODED_RUN,
  MIN_SEPARATED_CHARS,
  base32Decode,
  decodeRuns,
  decodeWindows,
  htmlDecode,
  htmlEscapeLength,
  mergeWindows,
  reverseSegment,
  rot13,
  rot13Segment,
  separatedDecode,
  unicodeFold,
  utf16Decode,
  decompress,
  escapeWindows,
  jsonEscapeLength,
  jsonUnescape,
  Latin1View,
  looksBinary,
  percentDecode,
  percentEscapeLength,
  sniffCompression,
  type DecodedRuns,
} from './decode.ts';

const text = (b: Buffer | null): string | null => (b === null ? null : b.toString('utf8'));
const runs = (s: string | Buffer): DecodedRuns => {
  const buf = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  return decodeRuns(buf);
};
const group = (r: DecodedRuns, encoding: string): string =>
  r.groups
    .filter((g) => g.encoding === encoding)
    .map((g) => g.bytes.toString('latin1'))
    .join('|');

describe('percentDecode', () => {
  it('decodes %XX in either case and leaves invalid escapes alone', () => {
    assert.equal(text(percentDecode(Buffer.from('a%20b%2fc%2F%zz%4'), false)), 'a b/c/%zz%4');
  });

  it('treats + as a space only in form mode', () => {
    assert.equal(text(percentDecode(Buffer.from('a+b%2B'), false)), 'a+b+');
    assert.equal(text(percentDecode(Buffer.from('a+b%2B'), true)), 'a b+');
    assert.equal(percentDecode(Buffer.from('a+b'), false), null);
  });

  it('returns null when nothing would change', () => {
    assert.equal(percentDecode(Buffer.from('plain text, 100% sure'), false), null);
  });

  it('decodes only windows around sparse escapes, joined by newlines', () => {
    const filler = 'x'.repeat(5000);
    const src = Buffer.from(`${filler}A%41B${filler}C%43D${filler}`);
    const out = percentDecode(src, false, 10)!.toString('latin1');
    // Windows reach 10 bytes either side of each escape (the A/C before it included).
    assert.equal(out, `${'x'.repeat(9)}AAB${'x'.repeat(9)}\n${'x'.repeat(9)}CCD${'x'.repeat(9)}`);
  });
});

describe('escapeWindows', () => {
  it('merges overlapping windows, and switches to the whole layer once they cover half of it', () => {
    const sparse = Buffer.from(`${'a'.repeat(100)}%41${'a'.repeat(5)}%42${'a'.repeat(100)}`);
    assert.deepEqual(escapeWindows(sparse, [0x25], percentEscapeLength, 4), [[96, 115]]);
    assert.equal(escapeWindows(sparse, [0x25], percentEscapeLength, 60), 'all');
    assert.equal(escapeWindows(Buffer.from('no escapes'), [0x25], percentEscapeLength, 4), null);
  });
});

describe('jsonUnescape', () => {
  it('undoes every JSON escape, \\xNN, and surrogate pairs', () => {
    const src = String.raw`q\" b\\ s\/ \b\f\n\r\t u\u0041\u00e9 pair\ud83d\ude00 x\x41`;
    assert.equal(text(jsonUnescape(Buffer.from(src))), 'q" b\\ s/ \b\f\n\r\t uAé pair😀 xA');
  });

  it('keeps backslashes that start no escape', () => {
    assert.equal(text(jsonUnescape(Buffer.from(String.raw`C:\temp\q \u12 end\\`))), 'C:\temp\\q \\u12 end\\');
    assert.equal(jsonUnescape(Buffer.from(String.raw`C:\q`)), null);
  });

  it('unescapes JSON nested inside JSON strings in one layer', () => {
    const nested = JSON.stringify(JSON.stringify({ k: 'a"b\nc' })).slice(1, -1);
    assert.equal(text(jsonUnescape(Buffer.from(nested))), '{"k":"a"b\nc"}');
  });

  it('with revealingOnly, opens windows only around \\/, \\u and \\x escapes', () => {
    const filler = 'y'.repeat(4000);
    const common = Buffer.from(`${filler}\\n\\"${filler}`);
    assert.equal(jsonUnescape(common, 16, true), null);
    assert.notEqual(jsonUnescape(common, 16, false), null);
    const revealing = Buffer.from(`${filler}a\\/b${filler}\\u0041`);
    assert.equal(text(jsonUnescape(revealing, 3, true)), 'yya/byy\nyyyA');
  });

  it('measures escapes precisely', () => {
    assert.equal(jsonEscapeLength(Buffer.from('\\u00e9'), 0), 6);
    assert.equal(jsonEscapeLength(Buffer.from('\\u00g9'), 0), 0);
    assert.equal(jsonEscapeLength(Buffer.from('\\x4'), 0), 0);
    assert.equal(jsonEscapeLength(Buffer.from('\\n'), 0), 2);
  });
});

describe('decodeRuns', () => {
  const secretText = 'the launch code is 0000-1111';
  it('decodes base64, base64url and hex runs of 16 characters or more', () => {
    const b64 = Buffer.from(secretText).toString('base64');
    const b64url = Buffer.from('>>>?? url-safe ~~~ text ???<<<').toString('base64url');
    const hex = Buffer.from('hex encoded text').toString('hex');
    const r = runs(`a=${b64}; b=${b64url}; c=${hex}; short=${Buffer.from('tiny').toString('base64')}`);
    assert.ok(group(r, 'base64').includes(secretText));
    assert.match(group(r, 'base64url'), /url-safe ~~~ text/);
    assert.match(group(r, 'hex'), /hex encoded text/);
    assert.ok(!group(r, 'base64').includes('tiny'));
  });

  it('decodes a run made only of hex digits (a hash, an id) as hex alone', () => {
    const sha = 'da39a3ee5e6b4b0d3255bfef95601890afd80709';
    const r = runs(`commit ${sha} done`);
    assert.deepEqual(
      r.groups.map((g) => g.encoding),
      ['hex'],
    );
    assert.equal(r.groups[0]!.bytes.toString('hex'), sha);
  });

  it('ignores runs shorter than MIN_ENCODED_RUN', () => {
    assert.deepEqual(runs(`${'Q'.repeat(MIN_ENCODED_RUN - 1)} ${'R'.repeat(MIN_ENCODED_RUN - 1)}`).groups, []);
    assert.deepEqual(
      runs('Q'.repeat(MIN_ENCODED_RUN)).groups.map((g) => g.encoding),
      ['base64'],
    );
    // With a digit 2-7, and 24 characters or padding, it is base32 too (one case, RFC 4648 alphabet);
    // shorter unpadded ones (an AWS access key ID) are identifiers far more often.
    for (const run of ['Q'.repeat(23) + '7', 'Q'.repeat(15) + '7======'])
      assert.deepEqual(
        runs(run).groups.map((g) => g.encoding),
        ['base64', 'base32'],
        run,
      );
    assert.deepEqual(
      runs('AKIA' + 'Q'.repeat(15) + '7').groups.map((g) => g.encoding),
      ['base64'],
    );
  });

  it('joins MIME- and PEM-wrapped lines, with real or JSON-escaped line breaks', () => {
    const payload = Buffer.from(`${'lorem ipsum '.repeat(20)}the needle is here`);
    const b64 = payload.toString('base64');
    const wrap = (cols: number, sep: string) => b64.match(new RegExp(`.{1,${cols}}`, 'g'))!.join(sep);
    for (const [name, wrapped] of [
      ['MIME CRLF 76', wrap(76, '\r\n')],
      ['PEM LF 64', wrap(64, '\n')],
      ['JSON-escaped \\n', wrap(64, '\\n')],
      ['JSON-escaped \\r\\n', wrap(76, '\\r\\n')],
    ] as const)
      assert.match(group(runs(`Content-Transfer-Encoding: base64\r\n\r\n${wrapped}\r\n--b--`), 'base64'), /the needle is here/, name);
  });

  it('realigns a padded run glued to preceding word characters', () => {
    const b64 = Buffer.from('aligned from the end').toString('base64');
    assert.ok(b64.endsWith('='));
    assert.match(group(runs(`prefix_${b64} tail`), 'base64url'), /aligned from the end/);
  });

  it('separates text-like from binary decoded runs and reports compressed ones', () => {
    const binary = Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37) % 32));
    const gz = gzipSync(Buffer.from('compressed payload'));
    const r = runs(`${binary.toString('base64')} ${Buffer.from('plain readable words here').toString('base64')} ${gz.toString('base64')}`);
    const b64 = r.groups.filter((g) => g.encoding === 'base64');
    assert.ok(b64.some((g) => g.text && g.bytes.toString().includes('plain readable')));
    assert.ok(b64.some((g) => !g.text));
    assert.deepEqual(
      r.compressed.map((c) => [c.format, c.encoding]),
      [['gzip', 'base64']],
    );
  });

  it('finds exactly the runs a regular expression finds, at every buffer alignment and size', () => {
    let seed = 12345;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
    const alphabet = 'aZ09fF+/_-';
    for (let t = 0; t < 1500; t++) {
      // Short inputs take the byte-probing path, longer ones (>= 256 bytes) the word-probing one.
      let s = '';
      const dense = t % 3 === 0 ? 97 : 86;
      for (let i = t % 2 === 0 ? rnd() % 220 : 256 + (rnd() % 1500); i > 0; i--)
        s += rnd() % 100 < dense ? alphabet[rnd() % alphabet.length] : ' ."'[rnd() % 3];
      const offset = rnd() % 4;
      const backing = Buffer.alloc(s.length + offset);
      backing.write(s, offset, 'latin1');
      const r = runs(backing.subarray(offset));
      const runs16 = [...s.matchAll(/[A-Za-z0-9+/_-]{16,}/g)].map((m) => m[0]);
      // Runs made only of hex digits are decoded as hex, not base64.
      const expected = runs16.filter((r) => !/^[0-9a-fA-F]+$/.test(r));
      const decodedSize = (strs: Buffer[]) => strs.reduce((n, b) => n + b.length + 1, 0);
      const gotB64 = r.groups.filter((g) => g.encoding !== 'hex').reduce((n, g) => n + g.bytes.length + 1, 0);
      assert.equal(gotB64, decodedSize(expected.map((e) => Buffer.from(e, 'base64')).filter((b) => b.length > 0)), `case ${t}`);
      const hexes = runs16.flatMap((e) => [...e.matchAll(/[0-9a-fA-F]{16,}/g)].map((m) => m[0]));
      const gotHex = r.groups.filter((g) => g.encoding === 'hex').reduce((n, g) => n + g.bytes.length + 1, 0);
      assert.equal(
        gotHex,
        hexes.reduce((n, h) => n + (h.length >> 1) + 1, 0),
        `hex case ${t}`,
      );
    }
  });
});

describe('decodeRuns on long runs', () => {
  let seed = 99;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rnd(256)));
  /** `s` inside text, at buffer offset `offset`. */
  const placed = (s: string, offset: number) => {
    const backing = Buffer.alloc(offset + s.length + 4);
    backing.write(`${s} .`, offset, 'latin1');
    return backing.subarray(offset, offset + s.length + 2);
  };
  /** RFC 4648 base32, decoded bit by bit (the reference for the five-bytes-at-a-time decoder). */
  const base32Reference = (s: string) => {
    const out: number[] = [];
    let acc = 0;
    let bits = 0;
    for (const c of s) {
      const v = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c.toUpperCase());
      if (v < 0) continue;
      acc = ((acc << 5) | v) & 0xfff;
      bits += 5;
      if (bits >= 8) out.push((acc >> (bits -= 8)) & 0xff);
    }
    return Buffer.from(out);
  };

  it('decodes blobs, hex dumps and base32 as a whole-string decoder would, at every alignment and length', () => {
    for (const offset of [0, 1, 2, 3])
      for (const n of [200, 777, 24_999, 40_001]) {
        const raw = bytes(n);
        const b64 = raw.toString(n % 2 === 0 ? 'base64' : 'base64url');
        const b64Group = decodeRuns(placed(b64, offset)).groups.filter((g) => g.encoding.startsWith('base64'));
        assert.deepEqual(b64Group[0]?.bytes, Buffer.from(b64, 'base64'), `base64 of ${n} at ${offset}`);
        const hex = raw.toString('hex') + (n % 3 === 0 ? 'a' : '');
        const hexGroup = decodeRuns(placed(hex, offset)).groups.filter((g) => g.encoding === 'hex');
        assert.deepEqual(hexGroup[0]?.bytes, Buffer.from(hex.slice(0, hex.length & ~1), 'hex'), `hex of ${n} at ${offset}`);
        const b32 = base32Of(raw);
        const b32Group = decodeRuns(placed(b32, offset)).groups.filter((g) => g.encoding === 'base32');
        assert.deepEqual(b32Group[0]?.bytes, base32Reference(b32), `base32 of ${n} at ${offset}`);
      }
  });

  it('tells base32 from other long runs by case and digits alone, however long', () => {
    const letters = 'q'.repeat(50_000);
    assert.equal(group(runs(letters), 'base32'), '', 'one case, no digit 2-7: a word');
    assert.notEqual(group(runs(`${letters}7`), 'base32'), '', 'a digit at the very end makes it base32');
    assert.equal(group(runs(`${letters}Q7`), 'base32'), '', 'mixed case is base64');
    assert.deepEqual(
      runs('a'.repeat(100_000)).groups.map((g) => g.encoding),
      ['hex'],
      'one hex digit repeated: hex only (it is no base32 without a digit, and no base64 being all hex)',
    );
  });
});

describe('Latin1View', () => {
  it('slices as toString(latin1) does, across its pieces', () => {
    const bytes = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) & 255));
    const view = new Latin1View(bytes);
    for (const [s, e] of [
      [0, 0],
      [0, 10],
      [65_530, 65_542],
      [1000, 140_000],
      [131_071, 131_073],
      [199_990, 200_000],
      [5, 5],
    ] as const)
      assert.equal(view.slice(s, e), bytes.toString('latin1', s, e), `${s}..${e}`);
    assert.equal(view.all(), bytes.toString('latin1'));
    assert.equal(view.slice(65_530, 65_542), bytes.toString('latin1', 65_530, 65_542), 'after all()');
  });
});

/** Base32 (RFC 4648, upper case, no padding) of `b`. */
function base32Of(b: Buffer): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const x of b) {
    acc = ((acc << 8) | x) & 0xffff;
    bits += 8;
    while (bits >= 5) out += A[(acc >> (bits -= 5)) & 31];
  }
  return bits > 0 ? out + A[(acc << (5 - bits)) & 31] : out;
}

describe('decompress', () => {
  const body = Buffer.from('{"message":"hello through a content coding"}'.repeat(20));
  it('undoes gzip, x-gzip, deflate (zlib and raw), br, zstd and identity', () => {
    for (const [coding, data] of [
      ['gzip', gzipSync(body)],
      ['x-gzip', gzipSync(body)],
      ['deflate', deflateSync(body)],
      ['deflate', deflateRawSync(body)],
      ['br', brotliCompressSync(body)],
      ['zstd', zstdCompressSync(body)],
      ['identity', body],
      [' GZIP ', gzipSync(body)],
    ] as const) {
      const r = decompress(coding, data, 1 << 20);
      assert.ok(r.ok, coding);
      assert.ok(r.bytes.equals(body), coding);
    }
  });

  it('stops at the output cap (decompression bomb) for every coding', () => {
    const bomb = Buffer.alloc(8 << 20);
    for (const [coding, data] of [
      ['gzip', gzipSync(bomb)],
      ['deflate', deflateSync(bomb)],
      ['br', brotliCompressSync(bomb)],
      ['zstd', zstdCompressSync(bomb)],
      ['identity', bomb],
    ] as const) {
      const r = decompress(coding, data, 64 * 1024);
      assert.equal(r.ok, false, coding);
      assert.equal(!r.ok && r.reason, 'limit', coding);
    }
  });

  it('reports corrupt data and unknown codings', () => {
    const corrupt = decompress('gzip', Buffer.from('not gzip at all'), 1024);
    assert.equal(!corrupt.ok && corrupt.reason, 'corrupt');
    const truncated = gzipSync(body).subarray(0, 20);
    assert.equal(decompress('gzip', truncated, 1 << 20).ok, false);
    const unknown = decompress('compress', body, 1024);
    assert.equal(!unknown.ok && unknown.reason, 'unsupported');
  });
});

describe('sniffCompression and looksBinary', () => {
  it('recognise gzip, zlib and zstd magic', () => {
    assert.equal(sniffCompression(gzipSync(Buffer.from('x'))), 'gzip');
    assert.equal(sniffCompression(deflateSync(Buffer.from('x'))), 'deflate');
    assert.equal(sniffCompression(zstdCompressSync(Buffer.from('x'))), 'zstd');
    assert.equal(sniffCompression(Buffer.from('plain text')), null);
    assert.equal(sniffCompression(Buffer.from([0x1f])), null);
  });

  it('tell text (including UTF-8) from binary', () => {
    assert.equal(looksBinary(Buffer.from('plain text\r\n\twith tabs, naïve café ☕')), false);
    assert.equal(looksBinary(Buffer.from(Array.from({ length: 100 }, (_, i) => i % 40))), true);
  });
});

describe('base32', () => {
  it('decodes RFC 4648 base32 in either case, with or without padding', () => {
    const cases: Array<[string, string]> = [
      ['', ''],
      ['f', 'MY======'],
      ['fo', 'MZXQ===='],
      ['foo', 'MZXW6==='],
      ['foob', 'MZXW6YQ='],
      ['fooba', 'MZXW6YTB'],
      ['foobar', 'MZXW6YTBOI======'],
    ];
    for (const [plain, enc] of cases) {
      assert.equal(base32Decode(enc).toString(), plain, enc);
      assert.equal(base32Decode(enc.toLowerCase().replace(/=/g, '')).toString(), plain, enc);
    }
  });

  it('finds single-case base32 runs with a digit 2-7 among the encoded runs', () => {
    const enc = 'ORUGKIDTMVRXEZLUEBXGC3LFEBUXGIDTO5XXEZDGNFZWQ'; // "the secret name is swordfish"
    const r = runs(`k=${enc}; lower=${enc.toLowerCase()}`);
    assert.match(group(r, 'base32'), /the secret name is swordfish.*\n.*the secret name is swordfish/s);
    assert.equal(group(runs('ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF'), 'base32'), '', 'letters only: a word, not base32');
    assert.equal(group(runs('MZXW6YTBMZXW6YTBmzxw6ytb'), 'base32'), '', 'mixed case is base64');
  });
});

describe('utf16Decode', () => {
  it('transcodes UTF-16LE and UTF-16BE text, by byte-order mark or by its zero bytes', () => {
    const text = 'token=abc123 päss ✓';
    assert.deepEqual(utf16Decode(Buffer.from(text, 'utf16le')), { encoding: 'utf16le', bytes: Buffer.from(text) });
    assert.deepEqual(utf16Decode(Buffer.from(text, 'utf16le').swap16()), { encoding: 'utf16be', bytes: Buffer.from(text) });
    assert.equal(utf16Decode(Buffer.from(`\ufeff${text}`, 'utf16le'))?.bytes.toString(), text);
  });

  it('leaves other bytes alone', () => {
    assert.equal(utf16Decode(Buffer.from('plain ascii text, long enough')), null);
    assert.equal(utf16Decode(Buffer.from('short', 'utf16le').subarray(0, 8)), null);
    const random = Buffer.from(Array.from({ length: 256 }, (_, i) => (i * 97 + 13) & 255));
    assert.equal(utf16Decode(random), null);
  });

  it('is applied to each decoded run on its own', () => {
    const r = runs(
      `a=${Buffer.from('first hidden text', 'utf16le').toString('base64')} b=${Buffer.from('second hidden', 'utf16le').toString('hex')}`,
    );
    const u = r.groups.filter((g) => g.utf16 === 'utf16le').map((g) => `${g.encoding}:${g.bytes.toString()}`);
    assert.deepEqual(u.sort(), ['base64:first hidden text', 'hex:second hidden']);
  });
});

describe('htmlDecode', () => {
  it('decodes decimal, hex and named references, with or without the semicolon for numeric ones', () => {
    assert.equal(text(htmlDecode(Buffer.from('&#103;&#x68;&#X70;&lowbar;a&amp;b &lt;i&gt; &#65 &quot;x&quot;'))), 'ghp_a&b <i> A "x"');
  });

  it('keeps what is not a reference, and decodes invalid code points to U+FFFD', () => {
    assert.equal(text(htmlDecode(Buffer.from('a & b &nosuch; &#; &#x110000; &amp'))), 'a & b &nosuch; &#; \ufffd &amp');
    assert.equal(htmlDecode(Buffer.from('R&D, fish & chips, a && b')), null);
  });

  it('undoes references escaped again (&amp;#103;), up to three rounds', () => {
    assert.equal(text(htmlDecode(Buffer.from('&amp;#103;&amp;amp;#104;'))), 'gh');
  });

  it('measures references precisely', () => {
    assert.equal(htmlEscapeLength(Buffer.from('&#103;x'), 0), 6);
    assert.equal(htmlEscapeLength(Buffer.from('&#103x'), 0), 5);
    assert.equal(htmlEscapeLength(Buffer.from('&amp;'), 0), 5);
    assert.equal(htmlEscapeLength(Buffer.from('&amp'), 0), 0);
    assert.equal(htmlEscapeLength(Buffer.from('&x'), 0), 0);
  });

  it('decodes only windows around sparse references', () => {
    const pad = 'x'.repeat(5000);
    assert.equal(
      text(htmlDecode(Buffer.from(`${pad}&#65;${pad}&#66;${pad}`), 10)),
      `${'x'.repeat(10)}A${'x'.repeat(10)}\n${'x'.repeat(10)}B${'x'.repeat(10)}`,
    );
  });
});

describe('separatedDecode', () => {
  const secret = 'ghp_Ab3De5Fg7Hj9Kl1Mn2Pq4Rs6Tu8Vw0XyZ12';

  it('removes a one- or two-byte separator repeated between every character', () => {
    for (const sep of [' ', '-', '.', '_', ',', '|', '\n', '\t', ', ', '\r\n', ' -'])
      assert.equal(text(separatedDecode(Buffer.from(`key: ${[...secret].join(sep)} (sent)`))), secret, JSON.stringify(sep));
  });

  it('keeps characters that equal the separator', () => {
    assert.equal(text(separatedDecode(Buffer.from([...'a_b_c_d_e_f_g_h_i_j_k_l_m'].join('_')))), 'a_b_c_d_e_f_g_h_i_j_k_l_m');
  });

  it('does not take in the letters of neighbouring words', () => {
    assert.equal(text(separatedDecode(Buffer.from(`see ${[...secret].join(' ')} here`))), secret);
  });

  it('finds runs at every offset and alignment, and several runs', () => {
    const spaced = [...secret].join(' ');
    for (let pre = 0; pre < 80; pre++)
      for (const off of [0, 1, 2, 3]) {
        // (A one-letter word right before the run would be read as part of it.)
        const buf = Buffer.from(`${'y'.repeat(off)}${'x'.repeat(pre + 2)}: ${spaced} tail words follow here`).subarray(off);
        assert.equal(text(separatedDecode(buf)), secret, `pre ${pre} off ${off}`);
      }
    assert.equal(text(separatedDecode(Buffer.from(`${[...secret].join('.')} and ${[...secret].join('-')}`))), `${secret}\n${secret}`);
  });

  it('ignores short runs, prose, indentation, rulers and digit lists', () => {
    assert.equal(separatedDecode(Buffer.from([...'abcdefghijklmno'].join(' '))), null, `${MIN_SEPARATED_CHARS - 1} characters`);
    for (const t of [
      'The quick brown fox jumps over the lazy dog. '.repeat(20),
      ' '.repeat(200),
      '- - - - - - - - - - - - - - - - - - - -',
      '=-'.repeat(50),
    ])
      assert.equal(separatedDecode(Buffer.from(t)), null, JSON.stringify(t.slice(0, 20)));
  });
});

describe('unicodeFold', () => {
  it('removes default-ignorable code points and applies NFKC, returning only windows that changed', () => {
    const out = unicodeFold(Buffer.from('a\u200Bb\u00ADc\uFE0Fd ｇｈｐ＿'), 1024, 1 << 20);
    assert.equal(text(out as Buffer), 'abcd ghp_');
    assert.equal(unicodeFold(Buffer.from('naïve Grüße 東京'), 1024, 1 << 20), null, 'already NFKC, nothing ignorable');
  });

  it('spells out Unicode tag characters as the ASCII they shadow', () => {
    const tags = [...'secret'].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join('');
    assert.equal(text(unicodeFold(Buffer.from(`hi${tags}there`), 1024, 1 << 20) as Buffer), 'hithere\nsecret');
  });

  it('leaves ordinary non-ASCII text alone: accents, CJK, Arabic, emoji with selectors and joiners, fullwidth punctuation', () => {
    const text = 'Grüße, 東京は晴れ！（本当に）… مَرْحَبًا 🌤️ 👨‍👩‍👧 10\u00a0€ naïve';
    assert.equal(unicodeFold(Buffer.from(text.repeat(100)), 1024, 1 << 20), null);
  });

  it('folds only windows around characters that can hide a token', () => {
    const pad = 'x'.repeat(5000);
    // Four bytes each side of the zero-width space's three.
    assert.equal(text(unicodeFold(Buffer.from(`${pad}a\u200Bb${pad}`), 4, 1 << 20) as Buffer), 'xxxabxxx');
  });

  it('gives up past its output cap or a fourfold expansion', () => {
    assert.equal(unicodeFold(Buffer.from('\uFDFA'.repeat(20000)), 1024, 1 << 30), null, 'expands, but into no token character');
    assert.equal(unicodeFold(Buffer.from('ｇ' + '\uFDFA'.repeat(20000)), 1024, 1 << 30), 'limit');
    assert.equal(unicodeFold(Buffer.from('ｇ'.repeat(1000)), 1024, 100), 'limit');
  });
});

describe('reversal, ROT13 and windows', () => {
  it('reverse and rot13 segments transform windows', () => {
    const src = Buffer.from('0123456789abcdefghij');
    assert.equal(
      decodeWindows(
        src,
        [
          [0, 4],
          [10, 14],
        ],
        reverseSegment,
      ).toString(),
      '3210\ndcba',
    );
    assert.equal(decodeWindows(src, 'all', rot13Segment).toString(), '0123456789nopqrstuvw');
    assert.equal(rot13('Hello, World!'), 'Uryyb, Jbeyq!');
  });

  it('mergeWindows clips, merges and switches to the whole layer past half', () => {
    assert.deepEqual(
      mergeWindows(
        [
          [50, 60],
          [-5, 5],
          [55, 70],
        ],
        1000,
      ),
      [
        [0, 5],
        [50, 70],
      ],
    );
    assert.equal(mergeWindows([[0, 600]], 1000), 'all');
    assert.equal(mergeWindows([], 1000), null);
  });
});
