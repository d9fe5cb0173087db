import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fingerprintSecret } from './fingerprint.ts';
import { HOST_FIELD, scanHost } from './host.ts';
import { RULE_FIXTURES } from './rule-fixtures.ts';
import { LeakScanner } from './scanner.ts';

const TOKEN = RULE_FIXTURES.github_pat!.positives[0]!;
const SECRET = 'canary-7Hq2Zx9Lm4Tp-Vx';
const scanner = new LeakScanner();
scanner.setFingerprints([fingerprintSecret('llm_api_key', Buffer.from(SECRET))]);

/** `data` cut into DNS labels of at most `size` characters. */
const labels = (data: string, size = 63) => data.match(new RegExp(`.{1,${size}}`, 'g'))!.join('.');
function base32(b: Buffer): string {
  const A = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let v = 0;
  let out = '';
  for (const x of b) {
    v = (v << 8) | x;
    bits += 8;
    while (bits >= 5) out += A[(v >> (bits -= 5)) & 31];
  }
  return bits > 0 ? out + A[(v << (5 - bits)) & 31] : out;
}

const ids = (host: string) => scanHost(scanner, host).map((f) => `${f.kind}:${f.id}:${f.encoding}`);

describe('scanHost', () => {
  it('finds a token hex-encoded across labels in front of the attacker domain', () => {
    const hex = Buffer.from(TOKEN).toString('hex');
    assert.deepEqual(ids(`${labels(hex, 40)}.attacker.example`), ['rule:github_pat:hex']);
    assert.deepEqual(ids(`${labels(hex.toUpperCase(), 30)}.x.attacker.example.`), ['rule:github_pat:hex']);
  });

  it('finds a vault secret hex-, base32- or base64url-encoded in labels', () => {
    assert.deepEqual(ids(`${labels(Buffer.from(SECRET).toString('hex'), 20)}.evil.example`), ['secret:llm_api_key:hex']);
    assert.deepEqual(ids(`${labels(base32(Buffer.from(SECRET)), 16)}.evil.example`), ['secret:llm_api_key:base32']);
    assert.deepEqual(ids(`${base32(Buffer.from(SECRET)).toUpperCase()}.evil.example`), ['secret:llm_api_key:base32']);
    // Labels shorter than a base64 run the scanner would decode by itself: only their concatenation reveals it.
    assert.deepEqual(ids(`${labels(Buffer.from(`k=${SECRET}`).toString('base64url'), 12)}.evil.example`), ['secret:llm_api_key:base64url']);
  });

  it('finds a token in a name as sent, and reports location url, field host', () => {
    assert.deepEqual(scanHost(scanner, `${TOKEN}.evil.example`), [
      { kind: 'rule', id: 'github_pat', location: 'url', field: HOST_FIELD, encoding: 'raw' },
    ]);
  });

  it('finds data in the middle of the name, after a label that is not valid in the encoding', () => {
    const hex = Buffer.from(SECRET).toString('hex');
    assert.deepEqual(ids(`www.${labels(hex, 20)}.evil.example`), ['secret:llm_api_key:hex']);
  });

  it('leaves ordinary names and addresses alone', () => {
    for (const host of [
      'api.openai.com',
      'api.anthropic.com',
      'hooks.slack.com',
      'deadbeefcafebabe.cdn.example.net',
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.blob.core.windows.net',
      'abcdefghijklmnop.s3.amazonaws.com',
      '192.168.1.1',
      '[2001:db8::1]',
      'localhost',
      '',
    ])
      assert.deepEqual(scanHost(scanner, host), [], host);
  });
});
