// A small development PKI: one CA, one certificate per workload identity.
// Imported only by the CLI and tests (not by services): it pulls in the X.509 writer.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { spiffeId } from './identity.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
// x509's own (DOM) key types; Node's webcrypto keys are the same objects at runtime.
type XKey = Parameters<typeof x509.SubjectKeyIdentifierExtension.create>[0];
type XPrivateKey = x509.X509CertificateCreateWithKeyParams['signingKey'];

const ALG: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export interface KeyAndCert {
  /** PKCS#8 PEM private key. */
  keyPem: string;
  certPem: string;
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64.trim()}\n-----END PRIVATE KEY-----\n`;
}

async function importKey(pem: string): Promise<CryptoKey> {
  const b64 = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, '');
  return webcrypto.subtle.importKey('pkcs8', Buffer.from(b64, 'base64'), ALG, true, ['sign']);
}

function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] ?? 0) & 0x7f; // positive
  return Buffer.from(b).toString('hex');
}

export async function createCa(commonName = 'Talon Development CA', years = 10): Promise<KeyAndCert> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}, O=Talon`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + years * 365 * 86_400_000),
    signingAlgorithm: ALG,
    keys: keys as unknown as { publicKey: XKey; privateKey: XPrivateKey },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as XKey),
    ],
  });
  return { keyPem: await exportKey(keys.privateKey), certPem: cert.toString('pem') + '\n' };
}

export interface LeafOptions {
  /** Workload name; becomes spiffe://talon/<name> and the certificate's CN. */
  name: string;
  dnsNames?: readonly string[];
  ips?: readonly string[];
  days?: number;
  /** Override the SPIFFE URI (tests use this to mint wrong identities). */
  uri?: string | null;
}

export async function issueCert(ca: KeyAndCert, opts: LeafOptions): Promise<KeyAndCert> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importKey(ca.keyPem);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const names: x509.JsonGeneralName[] = [];
  const uri = opts.uri === undefined ? spiffeId(opts.name) : opts.uri;
  if (uri !== null) names.push({ type: 'url', value: uri });
  for (const d of opts.dnsNames ?? ['localhost', opts.name]) names.push({ type: 'dns', value: d });
  for (const ip of opts.ips ?? ['127.0.0.1', '::1']) names.push({ type: 'ip', value: ip });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.name}, O=Talon`,
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.days ?? 365) * 86_400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey as unknown as XKey,
    signingKey: caKey as unknown as XPrivateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as XKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { keyPem: await exportKey(keys.privateKey), certPem: cert.toString('pem') + '\n' };
}
