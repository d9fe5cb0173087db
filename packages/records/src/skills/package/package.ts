// A skill package on disk: a directory holding skill.json (manifest), skill.wasm
// and skill.sig (publisher signature). Verification = manifest rules + signature by
// a trusted key + module policy; it is pure given the bytes, so the CLI (install)
// and tests run exactly the same checks.
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SkillPackageError } from './errors.ts';
import { checkModulePolicy, inspectModule, type ModuleInfo } from './inspect.ts';
import { canonicalJson, DEFAULT_ENTRYPOINT, validateManifest, type SkillManifest } from './manifest.ts';
import { parseSignatureFile, sha256Hex, signSkill, verifySkillSignature, type SignatureFile } from './signing.ts';

export const PACKAGE_FILES = { manifest: 'skill.json', wasm: 'skill.wasm', signature: 'skill.sig' } as const;

export interface PackageBytes {
  manifestText: string;
  wasm: Uint8Array;
  signatureText: string | undefined;
}

export interface VerifiedPackage {
  manifest: SkillManifest;
  manifestCanonical: string;
  sha256: string;
  signature: SignatureFile;
  module: ModuleInfo;
  wasm: Uint8Array;
}

export interface VerifyOptions {
  /** Public keys ("ed25519:...") the operator trusts. */
  trustedKeys: readonly string[];
  memoryCapMb: number;
  maxModuleBytes: number;
}

export const DEFAULT_INSTALL_LIMITS = { memoryCapMb: 256, maxModuleBytes: 32 * 1024 * 1024 } as const;

export function readPackageDir(dir: string): PackageBytes {
  const m = join(dir, PACKAGE_FILES.manifest);
  const w = join(dir, PACKAGE_FILES.wasm);
  const s = join(dir, PACKAGE_FILES.signature);
  if (!existsSync(m) || !existsSync(w)) {
    throw new SkillPackageError(
      'manifest_invalid',
      `${dir} is not a skill package: it needs ${PACKAGE_FILES.manifest} and ${PACKAGE_FILES.wasm} (and ${PACKAGE_FILES.signature})`,
    );
  }
  return {
    manifestText: readFileSync(m, 'utf8'),
    wasm: new Uint8Array(readFileSync(w)),
    signatureText: existsSync(s) ? readFileSync(s, 'utf8') : undefined,
  };
}

export function parseManifestText(text: string): { manifest: SkillManifest; canonical: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SkillPackageError('manifest_invalid', `skill.json is not valid JSON (${(err as Error).message})`);
  }
  const manifest = validateManifest(raw);
  return { manifest, canonical: canonicalJson(manifest) };
}

/** Full install-time verification. Throws SkillPackageError naming the first problem. */
export function verifyPackage(pkg: PackageBytes, opts: VerifyOptions): VerifiedPackage {
  const { manifest, canonical } = parseManifestText(pkg.manifestText);
  if (pkg.signatureText === undefined) {
    throw new SkillPackageError(
      'signature_missing',
      `the package has no ${PACKAGE_FILES.signature}; the publisher signs it with \`talon skills sign\``,
    );
  }
  const signature = parseSignatureFile(pkg.signatureText);
  const sha256 = sha256Hex(pkg.wasm);
  if (!verifySkillSignature(signature.publicKey, signature.signature, sha256, canonical)) {
    throw new SkillPackageError(
      'signature_invalid',
      'the signature does not match this manifest and binary (the package was modified after signing, or signed for another binary)',
    );
  }
  if (!opts.trustedKeys.includes(signature.publicKey)) {
    throw new SkillPackageError(
      'publisher_untrusted',
      `the package is signed by ${signature.publicKey}, which this installation does not trust; if you trust the publisher run \`talon skills trust ${signature.publicKey}\``,
    );
  }
  const module = inspectModule(pkg.wasm);
  checkModulePolicy(module, {
    manifestMemoryMb: manifest.permissions.memoryMb,
    memoryCapMb: opts.memoryCapMb,
    maxModuleBytes: opts.maxModuleBytes,
    entrypoint: manifest.entrypoint ?? DEFAULT_ENTRYPOINT,
  });
  return { manifest, manifestCanonical: canonical, sha256, signature, module, wasm: pkg.wasm };
}

/** Publisher side: signs the package in `dir` and writes skill.sig. Returns the signature. */
export function signPackageDir(dir: string, privateKeyPem: string): SignatureFile {
  const pkg = readPackageDir(dir);
  const { canonical } = parseManifestText(pkg.manifestText);
  const sig = signSkill(privateKeyPem, sha256Hex(pkg.wasm), canonical);
  writeFileSync(join(dir, PACKAGE_FILES.signature), `${JSON.stringify(sig, null, 2)}\n`);
  return sig;
}
