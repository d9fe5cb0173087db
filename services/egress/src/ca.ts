// The interception CA, in mitmproxy's layout so tools that trust a mitmproxy CA
// (or an operator's existing one) work unchanged:
//   mitmproxy-ca.pem        private key + certificate (PEM)
//   mitmproxy-ca-cert.pem   certificate (PEM)           — give this to clients
//   mitmproxy-ca-cert.cer   certificate (same PEM bytes, as mitmproxy writes it)
//   mitmproxy-ca-cert.p12   certificate (PKCS#12, for Windows/macOS keychains)
//   mitmproxy-ca.p12        key + certificate (PKCS#12)
// An existing mitmproxy-ca.pem in the directory is used as-is.
import { createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import { createRequire } from 'node:module';

type XKey = Parameters<typeof X509.SubjectKeyIdentifierExtension.create>[0];
type XPrivateKey = X509.X509CertificateCreateWithKeyParams['signingKey'];

let x509Lib: Promise<typeof X509> | undefined;
/**
 * @peculiar/x509 with its reflect-metadata polyfill (≈18 MiB resident), loaded when a
 * certificate is first made: a new CA, or the first intercepted host. An egress that never
 * intercepts never loads it (docs/architecture.md §11).
 */
function loadX509(): Promise<typeof X509> {
  x509Lib ??= (async () => {
    await import('reflect-metadata');
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    return x509;
  })();
  return x509Lib;
}

export const CA_FILES = {
  keyAndCert: 'mitmproxy-ca.pem',
  certPem: 'mitmproxy-ca-cert.pem',
  certCer: 'mitmproxy-ca-cert.cer',
  certP12: 'mitmproxy-ca-cert.p12',
  keyAndCertP12: 'mitmproxy-ca.p12',
} as const;

export interface InterceptionCa {
  certPem: string;
  /** Signs leaf certificates (PKCS#8 PEM, RSA or EC). Kept in memory only. */
  keyPem: string;
  created: boolean;
}

function splitPem(text: string): { key: string; cert: string } {
  const key = /-----BEGIN (?:RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA |EC )?PRIVATE KEY-----/.exec(text)?.[0];
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text)?.[0];
  if (!key || !cert) throw new Error(`${CA_FILES.keyAndCert} must hold a private key and a certificate (PEM)`);
  return { key: `${key}\n`, cert: `${cert}\n` };
}

/** Loads the CA from `dir`, creating a new one (RSA 2048, like mitmproxy) when none exists. */
export async function loadOrCreateCa(dir: string): Promise<InterceptionCa> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const main = join(dir, CA_FILES.keyAndCert);
  if (existsSync(main)) {
    const { key, cert } = splitPem(readFileSync(main, 'utf8'));
    const pkcs8 = createPrivateKey(key).export({ type: 'pkcs8', format: 'pem' }).toString();
    // Write any companion file an older or partial layout lacks (never the key file itself).
    writeCompanions(dir, pkcs8, cert, false);
    return { certPem: cert, keyPem: pkcs8, created: false };
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cryptoKey = await webcrypto.subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), alg, true, ['sign']);
  const pubKey = await webcrypto.subtle.importKey('spki', publicKey.export({ type: 'spki', format: 'der' }), alg, true, ['verify']);
  const now = Date.now();
  const x509 = await loadX509();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: 'CN=Talon Egress Interception CA, O=Talon',
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 10 * 365 * 86_400_000),
    signingAlgorithm: alg,
    keys: { publicKey: pubKey as unknown as XKey, privateKey: cryptoKey as unknown as XPrivateKey },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      await x509.SubjectKeyIdentifierExtension.create(pubKey as unknown as XKey),
    ],
  });
  const certPem = `${cert.toString('pem')}\n`;
  writeCompanions(dir, keyPem, certPem, true);
  return { certPem, keyPem, created: true };
}

function writeCompanions(dir: string, keyPem: string, certPem: string, includeKeyFile: boolean): void {
  const write = (name: string, data: string | Buffer, mode: number) => {
    const p = join(dir, name);
    if (!includeKeyFile && existsSync(p)) return;
    try {
      writeFileSync(p, data, { mode });
      chmodSync(p, mode);
    } catch (err) {
      // A CA mounted read-only (a Kubernetes secret) simply keeps the files it has.
      if (includeKeyFile) throw err;
    }
  };
  if (includeKeyFile) write(CA_FILES.keyAndCert, `${keyPem}${certPem}`, 0o600);
  write(CA_FILES.certPem, certPem, 0o644);
  write(CA_FILES.certCer, certPem, 0o644);
  // An existing CA's .p12 bundles are kept; node-forge (needed only to write them) is then never loaded.
  if (!includeKeyFile && existsSync(join(dir, CA_FILES.certP12)) && existsSync(join(dir, CA_FILES.keyAndCertP12))) return;
  const forge: typeof import('node-forge') = createRequire(import.meta.url)('node-forge');
  const fCert = forge.pki.certificateFromPem(certPem);
  const certOnly = forge.pkcs12.toPkcs12Asn1(null, [fCert], null, { algorithm: '3des', friendlyName: 'Talon Egress CA' });
  write(CA_FILES.certP12, Buffer.from(forge.asn1.toDer(certOnly).getBytes(), 'binary'), 0o644);
  try {
    const fKey = forge.pki.privateKeyFromPem(keyPem);
    const both = forge.pkcs12.toPkcs12Asn1(fKey, [fCert], null, { algorithm: '3des', friendlyName: 'Talon Egress CA' });
    write(CA_FILES.keyAndCertP12, Buffer.from(forge.asn1.toDer(both).getBytes(), 'binary'), 0o600);
  } catch {
    // node-forge reads RSA keys only; an operator-provided EC CA simply gets no key+cert .p12.
  }
}

/** Issues and caches per-host leaf certificates signed by the interception CA. */
export class LeafIssuer {
  private readonly ca: InterceptionCa;
  private readonly cache = new Map<string, Promise<SecureContext>>();
  private readonly max: number;
  private leafKeys: Promise<{ pair: webcrypto.CryptoKeyPair; keyPem: string }> | undefined;
  private signer: Promise<{ key: webcrypto.CryptoKey; alg: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams }> | undefined;

  constructor(ca: InterceptionCa, max = 2000) {
    this.ca = ca;
    this.max = max;
  }

  private leafKey() {
    this.leafKeys ??= (async () => {
      // One key for every leaf, as mitmproxy does: signing is the only per-host cost.
      const pair = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', pair.privateKey));
      return {
        pair,
        keyPem: `-----BEGIN PRIVATE KEY-----\n${der
          .toString('base64')
          .replace(/(.{64})/g, '$1\n')
          .trim()}\n-----END PRIVATE KEY-----\n`,
      };
    })();
    return this.leafKeys;
  }

  private caSigner() {
    this.signer ??= (async () => {
      const key = createPrivateKey(this.ca.keyPem);
      const der = key.export({ type: 'pkcs8', format: 'der' });
      const alg =
        key.asymmetricKeyType === 'ec'
          ? ({
              name: 'ECDSA',
              namedCurve: (key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256') as string,
            } as webcrypto.EcKeyImportParams)
          : ({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as webcrypto.RsaHashedImportParams);
      return { key: await webcrypto.subtle.importKey('pkcs8', der, alg, false, ['sign']), alg };
    })();
    return this.signer;
  }

  /** TLS context presenting a certificate for `host` (name or IP). */
  contextFor(host: string): Promise<SecureContext> {
    const key = host.toLowerCase();
    let ctx = this.cache.get(key);
    if (ctx) return ctx;
    ctx = this.issue(key);
    this.cache.set(key, ctx);
    if (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value as string);
    ctx.catch(() => this.cache.delete(key));
    return ctx;
  }

  private async issue(host: string): Promise<SecureContext> {
    const [{ pair, keyPem }, signer, x509] = await Promise.all([this.leafKey(), this.caSigner(), loadX509()]);
    const caCert = new x509.X509Certificate(this.ca.certPem);
    const now = Date.now();
    const san: X509.JsonGeneralName = isIP(host) ? { type: 'ip', value: host } : { type: 'dns', value: host };
    const signingAlgorithm = signer.alg.name === 'ECDSA' ? { name: 'ECDSA', hash: 'SHA-256' } : signer.alg;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      subject: `CN=${host.replace(/[,=+<>#;\\"]/g, '_')}`,
      issuer: caCert.subject,
      notBefore: new Date(now - 86_400_000),
      notAfter: new Date(now + 365 * 86_400_000),
      signingAlgorithm,
      publicKey: pair.publicKey as unknown as XKey,
      signingKey: signer.key as unknown as XPrivateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([san]),
        await x509.AuthorityKeyIdentifierExtension.create(caCert),
      ],
    });
    return createSecureContext({ key: keyPem, cert: `${cert.toString('pem')}\n${this.ca.certPem}`, minVersion: 'TLSv1.2' });
  }
}

/** Subject of a PEM certificate (tests and logs). */
export function certSubject(pem: string): string {
  return new X509Certificate(pem).subject;
}
