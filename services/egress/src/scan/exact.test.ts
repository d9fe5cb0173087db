import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ExactMatcher, InvalidFingerprint } from './exact.ts';
import { encodedForms, fingerprintSecret } from './fingerprint.ts';

const SECRET = Buffer.from('s3cr3t+value/with=specials "q"');
const OTHER = Buffer.from('another-secret-0123456789');

describe('ExactMatcher', () => {
  const matcher = new ExactMatcher([fingerprintSecret('alpha', SECRET), fingerprintSecret('beta', OTHER)]);

  it('finds every encoded form of every secret, with offset, name and encoding', () => {
    for (const secret of [SECRET, OTHER])
      for (const { encoding, bytes } of encodedForms(secret)) {
        const data = Buffer.concat([Buffer.from('prefix '), bytes, Buffer.from(' suffix')]);
        const hits = matcher.scan(data);
        const name = secret === SECRET ? 'alpha' : 'beta';
        assert.ok(
          hits.some((h) => h.name === name && h.encoding === encoding && h.offset === 7 && h.length === bytes.length),
          `${name} ${encoding}`,
        );
      }
  });

  it('finds matches at the very start and end of the buffer, and overlapping ones', () => {
    const data = Buffer.concat([SECRET, SECRET.subarray(0, 10), OTHER, SECRET]);
    const hits = matcher.scan(data).filter((h) => h.encoding === 'raw');
    assert.deepEqual(
      hits.map((h) => [h.name, h.offset]),
      [
        ['alpha', 0],
        ['beta', SECRET.length + 10],
        ['alpha', SECRET.length + 10 + OTHER.length],
      ],
    );
  });

  it('does not report a prefix match whose window differs or runs past the end', () => {
    const truncated = SECRET.subarray(0, SECRET.length - 1);
    assert.deepEqual(matcher.scan(truncated), []);
    const altered = Buffer.from(SECRET);
    altered[altered.length - 1] = altered[altered.length - 1]! ^ 1;
    assert.deepEqual(matcher.scan(altered), []);
  });

  it('reports each name when two secrets share a value, and never any bytes', () => {
    const m = new ExactMatcher([fingerprintSecret('one', OTHER), fingerprintSecret('two', OTHER)]);
    const hits = m.scan(Buffer.concat([Buffer.from('x'), OTHER]));
    assert.deepEqual(
      hits.filter((h) => h.encoding === 'raw').map((h) => h.name),
      ['one', 'two'],
    );
    assert.deepEqual(Object.keys(hits[0]!).sort(), ['encoding', 'length', 'name', 'offset']);
    assert.ok(!JSON.stringify(hits).includes(OTHER.toString()));
  });

  it('exposes its size without the values', () => {
    assert.deepEqual([...matcher.secretNames].sort(), ['alpha', 'beta']);
    assert.equal(matcher.maxLength, Math.max(...[SECRET, OTHER].flatMap((s) => encodedForms(s).map((f) => f.bytes.length))));
    assert.equal(matcher.jsonSensitive, true, 'SECRET contains a quote');
    assert.equal(new ExactMatcher([fingerprintSecret('b', OTHER)]).jsonSensitive, false);
    // A producer that emits no json forms at all: any secret with a percent form may hold JSON-escaped characters.
    const withoutJson = (v: Buffer) => {
      const fp = fingerprintSecret('x', v);
      return { ...fp, forms: fp.forms.filter((f) => f.encoding !== 'json') };
    };
    assert.equal(new ExactMatcher([withoutJson(Buffer.from('a/b+c=d:e-long-enough'))]).jsonSensitive, true);
    assert.equal(new ExactMatcher([withoutJson(OTHER)]).jsonSensitive, false);
    assert.deepEqual(new ExactMatcher().scan(Buffer.from('anything at all')), []);
    assert.equal(new ExactMatcher().maxLength, 0);
  });

  it('rejects malformed fingerprints with a message naming the secret and form', () => {
    const good = fingerprintSecret('k', OTHER);
    const form = good.forms[0]!;
    const bad = (patch: object) => new ExactMatcher([{ name: 'k', forms: [{ ...form, ...patch }] }]);
    assert.throws(
      () => bad({ prefix: Buffer.from('abc') }),
      (e: unknown) => e instanceof InvalidFingerprint && /secret k, form raw: prefix/.test(e.message),
    );
    assert.throws(() => bad({ sha256: Buffer.alloc(31) }), InvalidFingerprint);
    assert.throws(() => bad({ length: 4 }), /below the minimum/);
    assert.throws(() => new ExactMatcher([{ name: '', forms: [] }]), InvalidFingerprint);
  });
});
