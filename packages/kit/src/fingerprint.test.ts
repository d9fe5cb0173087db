import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { SecretFingerprint as ProtoSecretFingerprint } from '@talon/proto';
import { FINGERPRINT_PREFIX_BYTES, MIN_SECRET_BYTES, REVERSED_MIN_BYTES, encodedForms, fingerprintSecret } from './fingerprint.ts';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest();

describe('fingerprintSecret', () => {
  it('fingerprints every encoded form: length, first 4 bytes and SHA-256, computed independently here', () => {
    const value = Buffer.from('pa ss/wo+rd"\\é?>>');
    assert.match(value.toString('base64'), /[+/]/, 'precondition: base64url differs from base64');
    const fp = fingerprintSecret('db_password', value);
    assert.equal(fp.name, 'db_password');
    const expected: Record<string, string> = {
      raw: value.toString('latin1'),
      base64: value.toString('base64').replace(/=+$/, ''),
      base64url: value.toString('base64url'),
      hex: value.toString('hex'),
      hex_upper: value.toString('hex').toUpperCase(),
      percent: encodeURIComponent(value.toString('utf8')),
      json: JSON.stringify(value.toString('utf8')).slice(1, -1),
      html: value.toString('utf8').replace(/"/g, '&quot;').replace(/>/g, '&gt;'),
      reversed: [...value.toString('utf8')].reverse().join(''),
      rot13: value
        .toString('utf8')
        .replace(/[a-z]/gi, (c) => String.fromCharCode(((c.toLowerCase().charCodeAt(0) - 97 + 13) % 26) + (c <= 'Z' ? 65 : 97))),
    };
    assert.deepEqual(
      fp.forms.map((f) => f.encoding),
      Object.keys(expected),
    );
    for (const form of fp.forms) {
      const bytes = form.encoding === 'raw' ? value : Buffer.from(expected[form.encoding]!, 'utf8');
      assert.equal(form.length, bytes.length, form.encoding);
      assert.deepEqual(Buffer.from(form.prefix), bytes.subarray(0, FINGERPRINT_PREFIX_BYTES), form.encoding);
      assert.deepEqual(Buffer.from(form.sha256), sha(bytes), form.encoding);
    }
  });

  it('leaves out forms identical to an earlier one, except json (its equality to raw is the signal)', () => {
    // Only unreserved characters, no + or / in its base64, nothing JSON escapes.
    const fp = fingerprintSecret('plain', Buffer.from('abcdefghijklmnop'));
    assert.deepEqual(
      fp.forms.map((f) => f.encoding),
      ['raw', 'base64', 'hex', 'hex_upper', 'json', 'reversed', 'rot13'],
    );
    assert.ok(fp.forms[4]!.sha256.equals(fp.forms[0]!.sha256), 'json equals raw: nothing to escape');
    const digits = fingerprintSecret('digits', Buffer.from('1234567812345678'));
    assert.ok(
      !digits.forms.some((f) => f.encoding === 'hex_upper' && digits.forms.some((g) => g.encoding === 'hex' && g.sha256.equals(f.sha256))),
    );
  });

  it('gives no reversed form to values shorter than REVERSED_MIN_BYTES (its anchor is their last four bytes)', () => {
    const short = fingerprintSecret('short', Buffer.from('x'.repeat(REVERSED_MIN_BYTES - 3) + 'yz'));
    assert.ok(!short.forms.some((f) => f.encoding === 'reversed'));
    assert.ok(
      fingerprintSecret('long', Buffer.from('x'.repeat(REVERSED_MIN_BYTES - 1) + 'y')).forms.some((f) => f.encoding === 'reversed'),
    );
  });

  it('reverses UTF-8 values by character, other bytes byte by byte; rot13 leaves all but ASCII letters alone', () => {
    const utf8 = Buffer.from('päss-wörd-ünïcode-1234');
    const [rev] = encodedForms(utf8).filter((f) => f.encoding === 'reversed');
    assert.equal(rev!.bytes.toString('utf8'), [...utf8.toString('utf8')].reverse().join(''));
    const binary = Buffer.from([0xff, 0xfe, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e]);
    assert.deepEqual(encodedForms(binary).find((f) => f.encoding === 'reversed')!.bytes, Buffer.from(binary).reverse());
    assert.ok(!encodedForms(Buffer.from('1234-5678-9012')).some((f) => f.encoding === 'rot13'), 'no letters: same as raw');
  });

  it('gives values shorter than MIN_SECRET_BYTES no fingerprints', () => {
    assert.deepEqual(fingerprintSecret('pin', Buffer.from('1234567')).forms, []);
    assert.ok(fingerprintSecret('eight', Buffer.alloc(MIN_SECRET_BYTES, 0x61)).forms.length > 0);
  });

  it('has no json form for bytes that are not UTF-8 text', () => {
    const fp = fingerprintSecret('binary', Buffer.from([0xff, 0xfe, 0x00, 0x22, 0x5c, 0x80, 0x81, 0x82, 0x83]));
    assert.ok(!fp.forms.some((f) => f.encoding === 'json'));
    assert.ok(fp.forms.some((f) => f.encoding === 'percent'));
  });

  it('never carries more than 4 bytes of any form in clear', () => {
    const value = randomBytes(40);
    const fp = fingerprintSecret('k', value);
    const serialized = JSON.stringify(fp, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v));
    for (const { bytes } of encodedForms(value)) assert.ok(!serialized.includes(bytes.subarray(0, 8).toString('hex')));
  });

  it("does not modify the caller's value", () => {
    const value = Buffer.from('keep-me-intact-please');
    fingerprintSecret('k', value);
    assert.equal(value.toString(), 'keep-me-intact-please');
  });

  it('fits the generated proto message as is', () => {
    const asProto: ProtoSecretFingerprint = fingerprintSecret('llm_api_key', Buffer.from('a-long-enough-secret'));
    assert.ok(asProto.forms.every((f) => Buffer.isBuffer(f.prefix) && Buffer.isBuffer(f.sha256)));
  });
});
