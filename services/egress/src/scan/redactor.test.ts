import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExactMatcher } from './exact.ts';
import { encodedForms, fingerprintSecret } from './fingerprint.ts';
import { RedactionOverflow, RedactorEnded, ResponseRedactor } from './redactor.ts';

const SECRET = Buffer.from('tok-9f8e7d6c5b4a/+=xyz');
const LONGER = Buffer.from('tok-9f8e7d6c5b4a/+=xyz-and-more'); // SECRET is a prefix of it
const matcher = new ExactMatcher([fingerprintSecret('api_token', SECRET), fingerprintSecret('long_token', LONGER)]);

function streamed(input: Buffer, sizes: (i: number) => number, m = matcher): Buffer {
  const r = new ResponseRedactor(m);
  const out: Uint8Array[] = [];
  for (let at = 0, i = 0; at < input.length; i++) {
    const n = Math.max(1, sizes(i));
    out.push(r.push(input.subarray(at, at + n)));
    at += n;
  }
  out.push(r.end());
  return Buffer.concat(out);
}

function oneShot(input: Buffer, m = matcher): Buffer {
  const r = new ResponseRedactor(m);
  return Buffer.concat([r.push(input), r.end()]);
}

describe('ResponseRedactor', () => {
  it('redacts every encoded form of a secret, whatever the chunk boundaries', () => {
    for (const { encoding, bytes } of encodedForms(SECRET)) {
      const body = Buffer.concat([Buffer.from('{"data":"'), bytes, Buffer.from('","n":1}')]);
      const expected = `{"data":"[REDACTED:api_token]","n":1}`;
      for (let split = 0; split <= body.length; split++) {
        const out = streamed(body, (i) => (i === 0 ? split || 1 : body.length)).toString('latin1');
        assert.equal(out, expected, `${encoding}, split at ${split}`);
      }
      assert.equal(streamed(body, () => 1).toString('latin1'), expected, `${encoding}, byte by byte`);
    }
  });

  it('prefers the longer secret when one is a prefix of another, across chunks', () => {
    const body = Buffer.concat([Buffer.from('a '), LONGER, Buffer.from(' b '), SECRET, Buffer.from(' c')]);
    const expected = 'a [REDACTED:long_token] b [REDACTED:api_token] c';
    for (let size = 1; size <= body.length; size++) assert.equal(streamed(body, () => size).toString(), expected, `chunks of ${size}`);
  });

  it('matches a one-shot redaction for random chunkings of a long body', () => {
    let seed = 99;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
    const forms = [...encodedForms(SECRET), ...encodedForms(LONGER)].map((f) => f.bytes);
    const parts: Buffer[] = [];
    for (let i = 0; i < 300; i++) parts.push(Buffer.from('lorem ipsum dolor '.slice(0, rnd() % 18)), forms[rnd() % forms.length]!);
    const body = Buffer.concat(parts);
    const expected = oneShot(body);
    for (const s of [SECRET, LONGER]) for (const { bytes } of encodedForms(s)) assert.equal(expected.indexOf(bytes), -1);
    for (let trial = 0; trial < 20; trial++) assert.ok(streamed(body, () => 1 + (rnd() % 97)).equals(expected), `trial ${trial}`);
  });

  it('holds back at most maxLength - 1 bytes', () => {
    const r = new ResponseRedactor(matcher);
    const out = r.push(Buffer.alloc(10_000, 0x61));
    assert.equal(out.length, 10_000 - (matcher.maxLength - 1));
    assert.equal(r.pendingBytes, matcher.maxLength - 1);
    assert.equal(r.end().length, matcher.maxLength - 1);
  });

  it('passes chunks through untouched when there are no secrets', () => {
    const r = new ResponseRedactor(new ExactMatcher());
    const chunk = Buffer.from('hello');
    assert.equal(r.push(chunk), chunk);
    assert.equal(r.end().length, 0);
  });

  it('fails closed instead of buffering without bound on endlessly overlapping matches', () => {
    const periodic = new ExactMatcher([fingerprintSecret('periodic', Buffer.from('abcabcab'))]);
    const r = new ResponseRedactor(periodic);
    const chunk = Buffer.from('abc'.repeat(20_000));
    assert.throws(() => {
      for (let i = 0; i < 100; i++) r.push(chunk);
    }, RedactionOverflow);
    // Short runs of the same still redact normally.
    assert.equal(oneShot(Buffer.from('x abcabcab y'), periodic).toString(), 'x [REDACTED:periodic] y');
  });

  it('uses a custom replacement, counts redactions, and refuses pushes after end', () => {
    const r = new ResponseRedactor(matcher, { replacement: (name) => `<${name}>` });
    const out = Buffer.concat([r.push(Buffer.concat([SECRET, Buffer.from(' '), SECRET])), r.end()]).toString();
    assert.equal(out, '<api_token> <api_token>');
    assert.equal(r.redactions.get('api_token'), 2);
    assert.throws(() => r.push(Buffer.from('x')), RedactorEnded);
    assert.equal(r.end().length, 0);
  });
});
