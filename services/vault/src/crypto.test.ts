import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  AuthenticationFailed,
  checkKdfParams,
  deriveKek,
  KDF_MINIMUM,
  makeCheck,
  newKey,
  newSalt,
  open,
  seal,
  secretAad,
  sha256,
  unwrapKey,
  verifyCheck,
  wrapKey,
  type SecretRowIdentity,
} from './crypto.ts';

const row: SecretRowIdentity = { owner: 'operator', name: 'llm_api_key', version: 3, keyId: 1, policyHash: sha256('policy-a') };

describe('AES-256-GCM with row-bound associated data', () => {
  it('round-trips under the same key and associated data', () => {
    const key = newKey();
    const s = seal(key, Buffer.from('sk-live-123456'), secretAad(row));
    assert.equal(s.nonce.length, 12);
    assert.equal(open(key, s, secretAad(row)).toString(), 'sk-live-123456');
  });

  it('refuses a ciphertext presented for another owner, name, version, key id or policy', () => {
    const key = newKey();
    const s = seal(key, Buffer.from('sk-live-123456'), secretAad(row));
    for (const other of [
      { ...row, owner: 'tenant2' },
      { ...row, name: 'other_secret' },
      { ...row, version: 4 },
      { ...row, keyId: 2 },
      { ...row, policyHash: sha256('policy-b') },
    ]) {
      assert.throws(() => open(key, s, secretAad(other)), AuthenticationFailed);
    }
  });

  it('encodes fields unambiguously (length-prefixed), so shifting a boundary changes the associated data', () => {
    const a = secretAad({ ...row, owner: 'ab', name: 'c' });
    const b = secretAad({ ...row, owner: 'a', name: 'bc' });
    assert.notDeepEqual(a, b);
  });

  it('detects a flipped bit in ciphertext, tag or nonce', () => {
    const key = newKey();
    const s = seal(key, Buffer.from('value-0123456789'), secretAad(row));
    for (const mutate of [
      () => ({ nonce: s.nonce, ciphertext: flip(s.ciphertext, 0) }),
      () => ({ nonce: s.nonce, ciphertext: flip(s.ciphertext, s.ciphertext.length - 1) }),
      () => ({ nonce: flip(s.nonce, 5), ciphertext: s.ciphertext }),
      () => ({ nonce: s.nonce, ciphertext: s.ciphertext.subarray(0, 10) }),
    ]) {
      assert.throws(() => open(key, mutate(), secretAad(row)), AuthenticationFailed);
    }
  });

  it('draws a fresh nonce for every encryption (no repeats over 20k, ciphertexts differ)', () => {
    const key = newKey();
    const seen = new Set<string>();
    const cts = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const s = seal(key, Buffer.from('same plaintext'), secretAad(row));
      seen.add(s.nonce.toString('hex'));
      cts.add(s.ciphertext.toString('hex'));
    }
    assert.equal(seen.size, 20_000);
    assert.equal(cts.size, 20_000);
  });
});

describe('data-key wrapping', () => {
  it('wraps and unwraps a data key under the KEK', () => {
    const kek = newKey();
    const dk = newKey();
    const w = wrapKey(kek, 7, dk);
    assert.ok(!w.ciphertext.includes(dk));
    assert.deepEqual(unwrapKey(kek, 7, w), dk);
  });

  it('refuses the wrong KEK and a wrapped key moved to another key id', () => {
    const kek = newKey();
    const w = wrapKey(kek, 7, newKey());
    assert.throws(() => unwrapKey(newKey(), 7, w), AuthenticationFailed);
    assert.throws(() => unwrapKey(kek, 8, w), AuthenticationFailed);
  });
});

describe('Argon2id key-encryption key', () => {
  const params = KDF_MINIMUM;

  it('is deterministic for passphrase, salt and parameters, and differs when any changes', async () => {
    const salt = newSalt();
    const a = await deriveKek(Buffer.from('correct horse battery staple'), salt, params);
    const b = await deriveKek(Buffer.from('correct horse battery staple'), salt, params);
    const c = await deriveKek(Buffer.from('correct horse battery stapler'), salt, params);
    const d = await deriveKek(Buffer.from('correct horse battery staple'), newSalt(), params);
    const e = await deriveKek(Buffer.from('correct horse battery staple'), salt, { ...params, passes: 3 });
    assert.equal(a.length, 32);
    assert.deepEqual(a, b);
    for (const other of [c, d, e]) assert.notDeepEqual(a, other);
  });

  it('the check value tells the right KEK from a wrong one', async () => {
    const salt = newSalt();
    const kek = await deriveKek(Buffer.from('correct horse battery staple'), salt, params);
    const wrong = await deriveKek(Buffer.from('Correct horse battery staple'), salt, params);
    const check = makeCheck(kek, salt);
    assert.equal(verifyCheck(kek, salt, check), true);
    assert.equal(verifyCheck(wrong, salt, check), false);
    assert.equal(verifyCheck(kek, newSalt(), check), false, 'the check is bound to its salt');
  });

  it('refuses parameters below the OWASP minimum (m=19 MiB, t=2, p=1) and absurd ones', async () => {
    assert.throws(() => checkKdfParams({ memoryKiB: 19 * 1024 - 1, passes: 2, parallelism: 1 }), /memoryKiB/);
    assert.throws(() => checkKdfParams({ memoryKiB: 19 * 1024, passes: 1, parallelism: 1 }), /passes/);
    assert.throws(() => checkKdfParams({ memoryKiB: 2 ** 40, passes: 2, parallelism: 1 }), /memoryKiB/);
    await assert.rejects(deriveKek(Buffer.from('x'), randomBytes(8), params), /salt/);
  });
});

function flip(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b);
  c[i] = c[i]! ^ 1;
  return c;
}
