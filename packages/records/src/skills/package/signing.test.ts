import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, sign } from 'node:crypto';
import { SkillPackageError } from './errors.ts';
import {
  decodePublicKey,
  generatePublisherKey,
  normalizePublicKey,
  parseSignatureFile,
  publisherKeyId,
  sha256Hex,
  signSkill,
  signedPayload,
  verifySkillSignature,
} from './signing.ts';

const wasm = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
const manifest = '{"name":"a","version":"1.0.0"}';

describe('publisher signatures', () => {
  const key = generatePublisherKey();
  const sha = sha256Hex(wasm);

  it('verifies what was signed and nothing else', () => {
    const s = signSkill(key.privateKeyPem, sha, manifest);
    assert.equal(s.publicKey, key.publicKey);
    assert.ok(verifySkillSignature(key.publicKey, s.signature, sha, manifest));
    assert.equal(verifySkillSignature(key.publicKey, s.signature, sha256Hex(new Uint8Array([1])), manifest), false, 'other binary');
    assert.equal(verifySkillSignature(key.publicKey, s.signature, sha, manifest.replace('1.0.0', '1.0.1')), false, 'other manifest');
    assert.equal(verifySkillSignature(generatePublisherKey().publicKey, s.signature, sha, manifest), false, 'other key');
    // One character changed inside the signature (the last character carries two ignored bits:
    // rewriting the tail could leave the bytes as they were, about once in a thousand keys).
    const altered = `${s.signature.slice(0, 10)}${s.signature[10] === 'A' ? 'B' : 'A'}${s.signature.slice(11)}`;
    assert.equal(verifySkillSignature(key.publicKey, altered, sha, manifest), false, 'altered signature');
  });

  it('binds signatures to Talon skills (domain-separated payload)', () => {
    const raw = Buffer.from(`${sha}\n${manifest}`);
    const bare = sign(null, raw, createPrivateKey(key.privateKeyPem)).toString('base64url');
    assert.equal(verifySkillSignature(key.publicKey, bare, sha, manifest), false);
    assert.ok(signedPayload(sha, manifest).toString().startsWith('talon-skill-signature-v1\n'));
  });

  it('encodes keys as ed25519:<base64url> and refuses anything else', () => {
    assert.match(key.publicKey, /^ed25519:[A-Za-z0-9_-]{43}$/);
    assert.equal(normalizePublicKey(` ${key.publicKey} `), key.publicKey);
    assert.match(publisherKeyId(key.publicKey), /^[0-9a-f]{16}$/);
    assert.equal(decodePublicKey(key.publicKey).asymmetricKeyType, 'ed25519');
    for (const bad of ['ed25519:abc', 'rsa:AAAA', key.publicKey.slice(8), `${key.publicKey}A`]) {
      assert.throws(() => decodePublicKey(bad), SkillPackageError, bad);
    }
  });

  it('refuses non-Ed25519 signing keys with a hint', () => {
    assert.throws(() => signSkill('not a key', sha, manifest), /talon skills keygen/);
  });

  it('parses signature files strictly', () => {
    const s = signSkill(key.privateKeyPem, sha, manifest);
    assert.deepEqual(parseSignatureFile(JSON.stringify(s)), s);
    assert.throws(() => parseSignatureFile('{}'), /talon skills sign/);
    assert.throws(() => parseSignatureFile('nope'), /not JSON/);
  });
});
