import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import wabtInit from 'wabt';
import { SkillPackageError } from './errors.ts';
import { canonicalJson } from './manifest.ts';
import { verifyPackage, type PackageBytes } from './package.ts';
import { generatePublisherKey, sha256Hex, signSkill } from './signing.ts';

const publisher = generatePublisherKey();
const manifest = {
  name: 'echo',
  version: '1.0.0',
  description: 'echoes',
  inputSchema: { type: 'object' },
  permissions: { memoryMb: 1, timeoutMs: 1000 },
};
let wasm: Uint8Array;
before(async () => {
  const wabt = await wabtInit();
  const m = wabt.parseWat('e.wat', '(module (memory (export "memory") 1 16) (func (export "run") (result i32) (i32.const 0)))');
  wasm = m.toBinary({}).buffer;
  m.destroy();
});

function pkg(over: Partial<PackageBytes> = {}, m: object = manifest): PackageBytes {
  const sig = signSkill(publisher.privateKeyPem, sha256Hex(wasm), canonicalJson(m));
  return { manifestText: JSON.stringify(m, null, 2), wasm, signatureText: JSON.stringify(sig), ...over };
}

const opts = { trustedKeys: [publisher.publicKey], memoryCapMb: 256, maxModuleBytes: 1 << 20 };

function refused(p: PackageBytes, reason: string, re: RegExp, o = opts): void {
  assert.throws(
    () => verifyPackage(p, o),
    (e: unknown) => e instanceof SkillPackageError && e.reason === reason && re.test(e.message),
  );
}

describe('package verification (install)', () => {
  it('accepts a package signed by a trusted key, whatever the manifest formatting', () => {
    const v = verifyPackage(pkg(), opts);
    assert.equal(v.sha256, sha256Hex(wasm));
    assert.equal(v.manifestCanonical, canonicalJson(manifest));
  });

  it('refuses a missing, malformed or mismatched signature', () => {
    refused(pkg({ signatureText: undefined }), 'signature_missing', /talon skills sign/);
    refused(pkg({ signatureText: '{"format":"x"}' }), 'signature_invalid', /re-sign/);
    const other = new Uint8Array(wasm);
    other[other.length - 1] = other[other.length - 1]! ^ 1;
    refused(pkg({ wasm: other }), 'signature_invalid', /modified after signing/);
    refused(
      pkg({ manifestText: JSON.stringify({ ...manifest, permissions: { ...manifest.permissions, memoryMb: 2 } }) }),
      'signature_invalid',
      /does not match/,
    );
  });

  it('refuses a valid signature by a key the operator does not trust, naming the trust command', () => {
    refused(pkg(), 'publisher_untrusted', /talon skills trust ed25519:/, { ...opts, trustedKeys: [generatePublisherKey().publicKey] });
  });

  it('applies the module policy after the signature', () => {
    refused(pkg({}, { ...manifest, entrypoint: 'main' }), 'entrypoint_missing', /"main"/);
  });
});
