import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fingerprintSecret } from './fingerprint.ts';
import { RULE_FIXTURES } from './rule-fixtures.ts';
import { redactText, minimalWindow } from './redact.ts';
import { LeakScanner, type ScanFinding } from './scanner.ts';

// Assertion messages never include the values (even generated ones look like credentials).
const TOKEN = RULE_FIXTURES.github_pat!.positives[0]!;
const SECRET = 'canary-7Hq2Zx9Lm4Tp-Vx';
const scanner = new LeakScanner();
scanner.setFingerprints([fingerprintSecret('llm_api_key', Buffer.from(SECRET))]);

const b64 = (s: string) => Buffer.from(s).toString('base64');
const interleave = (s: string, sep: string) => [...s].join(sep);
const backwards = (s: string) => [...s].reverse().join('');

/** Redacts, then checks: clean, no trace of the values, idempotent, and the given clean parts kept. */
function check(text: string, keep: readonly string[], how: string) {
  const r = redactText(scanner, text);
  assert.ok(r.findings.length > 0, `${how}: found something to redact`);
  assert.deepEqual(scanner.scanText(r.text, 'body'), [], `${how}: scans clean`);
  for (const v of [TOKEN, SECRET, TOKEN.slice(4, 20), SECRET.slice(7, 18)]) assert.ok(!r.text.includes(v), `${how}: no trace of a value`);
  for (const k of keep) assert.ok(r.text.includes(k), `${how}: keeps "${k}"`);
  assert.ok(r.replaced.length > 0, `${how}: says what it replaced`);
  const again = redactText(scanner, r.text);
  assert.equal(again.text, r.text, `${how}: idempotent`);
  assert.deepEqual(again.replaced, []);
  return r;
}

describe('redactText', () => {
  it('returns clean text unchanged', () => {
    const text = 'Nothing to see here: {"a": "b"} and 0123456789abcdef0123456789abcdef, ünïcödé.';
    assert.deepEqual(redactText(scanner, text), { text, findings: [], replaced: [] });
  });

  it('replaces raw matches at their exact spans, with markers naming the rule or the secret', () => {
    const r = check(
      `Use ${TOKEN} for the deploy, and ${SECRET} for the model.`,
      ['Use ', ' for the deploy, and ', ' for the model.'],
      'raw',
    );
    assert.equal(r.text, 'Use [REDACTED:github_pat] for the deploy, and [REDACTED:secret:llm_api_key] for the model.');
    assert.deepEqual(r.replaced, ['github_pat', 'secret:llm_api_key']);
    assert.deepEqual(
      r.findings.map((f) => `${f.kind}:${f.id}`),
      ['rule:github_pat', 'secret:llm_api_key'],
    );
  });

  it('redacts base64-, percent- and hex-encoded secrets inside ordinary prose, keeping the prose', () => {
    const pct = [...Buffer.from(SECRET)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
    check(
      `Here is the blob ${b64(`token=${TOKEN}`)} for you.\nThe next line is fine.`,
      ['Here is the blob ', ' for you.\nThe next line is fine.'],
      'base64',
    );
    check(`Open https://x.example/?k=${pct}&q=cats please`, ['Open https://x.example/?k=', '&q=cats please'], 'percent');
    check(`hex ${Buffer.from(`pw=${SECRET}`).toString('hex')} done`, ['hex ', ' done'], 'hex');
  });

  it('redacts every carrier the scanner sees, keeping the text around it', () => {
    const cases: Array<[string, string]> = [
      ['zero-width', interleave(TOKEN, '\u200B')],
      ['fullwidth', [...SECRET].map((c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).join('')],
      ['reversed', backwards(TOKEN)],
      [
        'rot13',
        TOKEN.replace(/[a-z]/gi, (c) => String.fromCharCode(((c.toLowerCase().charCodeAt(0) - 97 + 13) % 26) + (c <= 'Z' ? 65 : 97))),
      ],
      ['html', [...SECRET].map((c) => `&#${c.charCodeAt(0)};`).join('')],
      ['utf16', b64(Buffer.from(`pw=${SECRET}`, 'utf16le').toString('latin1'))],
      ['separated', interleave(TOKEN, ' ')],
      ['separated-dash', interleave(SECRET, '-')],
    ];
    for (const [how, carrier] of cases)
      check(`Before the thing. ${carrier} After the thing.`, ['Before the thing.', 'After the thing.'], how);
  });

  it('redacts a secret split across JSON values by replacing just those values, keeping the JSON valid', () => {
    const body = JSON.stringify({
      model: 'gpt-4o',
      a: TOKEN.slice(0, 15),
      b: TOKEN.slice(15),
      c: SECRET.slice(0, 9),
      d: SECRET.slice(9),
      stream: 'true',
    });
    const r = check(body, ['"model":"gpt-4o"', '"stream":"true"'], 'json split');
    const parsed = JSON.parse(r.text) as Record<string, string>;
    assert.equal(parsed.a, '[REDACTED:github_pat]');
    assert.equal(parsed.model, 'gpt-4o');
    const pretty = JSON.stringify({ first: 'keep me', p: [...TOKEN], last: 'and me' }, null, 2);
    check(pretty, ['"first": "keep me"', '"last": "and me"'], 'json split per character');
  });

  it('redacts a secret in a long chat message without losing the rest of it', () => {
    const message = `${'The quarterly report is attached. '.repeat(40)}Key: ${b64(`secret ${SECRET}`)}. ${'Numbers are up. '.repeat(40)}`;
    const body = JSON.stringify({ messages: [{ role: 'user', content: message }] });
    const r = check(body, ['The quarterly report is attached.', 'Numbers are up.', '"role":"user"'], 'chat');
    assert.ok(r.text.length > body.length - 120, 'only the blob went');
  });

  it('takes a custom marker, given the finding', () => {
    const seen: ScanFinding[] = [];
    const r = redactText(scanner, `a ${TOKEN} b`, { marker: (f) => (seen.push(f), `<${f.kind}>`) });
    assert.equal(r.text, 'a <rule> b');
    assert.equal(seen[0]!.id, 'github_pat');
  });

  it('replaces the whole text when it is too large to scan, or when a custom marker is itself a leak', () => {
    const small = new LeakScanner({ maxScanBytes: 64 });
    const big = 'x'.repeat(100);
    assert.equal(redactText(small, big).text, '[REDACTED:scan_limit_exceeded]');
    assert.equal(redactText(scanner, `a ${TOKEN} b`, { marker: () => TOKEN }).text, '[REDACTED]');
  });

  it('honours the location (a URL treats + as a space and joins query values)', () => {
    const url = `https://x.example/cb?a=${TOKEN.slice(0, 12)}&b=${TOKEN.slice(12)}&c=ok`;
    const r = redactText(scanner, url, { location: 'url' });
    assert.deepEqual(scanner.scanText(r.text, 'url'), []);
    assert.ok(r.text.startsWith('https://x.example/cb?'));
  });
});

describe('minimalWindow', () => {
  it('finds the smallest window that holds, even when holding is not monotone', () => {
    const needed = new Set([3, 4]);
    assert.deepEqual(
      minimalWindow(10, (i, j) => i <= 3 && j >= 4 && [...needed].every((k) => k >= i && k <= j)),
      [3, 4],
    );
    assert.deepEqual(
      minimalWindow(1, () => true),
      [0, 0],
    );
  });
});
