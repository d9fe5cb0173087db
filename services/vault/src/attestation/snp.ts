// AMD SEV-SNP attestation reports (SEV-SNP ABI specification, "ATTESTATION_REPORT
// structure"): parsing and a verifier that checks, in this order, the length, the
// version and signature algorithm, the ECDSA P-384 signature under the trusted VCEK,
// that report_data binds this unseal's nonce, that the guest policy forbids
// debugging, and that the launch measurement is one the operator allowed.
// node:crypto only. Fetching and checking AMD's ARK/ASK chain online is out of
// scope: the operator supplies the VCEK (optionally with its chain) in a file.
import { X509Certificate, createPublicKey, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';
import { MEASUREMENT_HEX, REPORT_DATA_BYTES, reportDataFor, type Evidence, type Expected, type Verdict, type Verifier } from './types.ts';

/** Offsets from the ABI specification. */
export const SNP = Object.freeze({
  reportBytes: 0x4a0,
  version: 0x00,
  policy: 0x08,
  vmpl: 0x30,
  signatureAlgo: 0x34,
  reportData: 0x50,
  measurement: 0x90,
  measurementBytes: 48,
  reportedTcb: 0x180,
  chipId: 0x1a0,
  /** The signature covers bytes [0, signedBytes). */
  signedBytes: 0x2a0,
  signatureR: 0x2a0,
  signatureS: 0x2e8,
  /** r and s are little-endian in 72-byte fields; P-384 uses the low 48. */
  signatureFieldBytes: 72,
  /** SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384. */
  ecdsaP384Sha384: 1,
  /** Guest policy bit 19: DEBUG allowed. */
  policyDebugBit: 19n,
  minVersion: 2,
});

export interface SnpReport {
  version: number;
  policy: bigint;
  vmpl: number;
  signatureAlgo: number;
  reportData: Buffer;
  measurement: Buffer;
  reportedTcb: bigint;
  signed: Buffer;
  /** r || s, big-endian, 48 bytes each (IEEE P1363), as node:crypto verifies it. */
  signatureP1363: Buffer;
}

/** Little-endian field -> big-endian `bytes`-long integer; undefined if it does not fit. */
function leToBe(field: Buffer, bytes: number): Buffer | undefined {
  if (field.subarray(bytes).some((b) => b !== 0)) return undefined;
  return Buffer.from(field.subarray(0, bytes)).reverse();
}

/** Parses the fixed layout; undefined if the buffer is shorter than a report. */
export function parseSnpReport(bytes: Uint8Array): SnpReport | undefined {
  if (bytes.length < SNP.reportBytes) return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, SNP.reportBytes);
  const r = leToBe(b.subarray(SNP.signatureR, SNP.signatureR + SNP.signatureFieldBytes), 48);
  const s = leToBe(b.subarray(SNP.signatureS, SNP.signatureS + SNP.signatureFieldBytes), 48);
  return {
    version: b.readUInt32LE(SNP.version),
    policy: b.readBigUInt64LE(SNP.policy),
    vmpl: b.readUInt32LE(SNP.vmpl),
    signatureAlgo: b.readUInt32LE(SNP.signatureAlgo),
    reportData: b.subarray(SNP.reportData, SNP.reportData + REPORT_DATA_BYTES),
    measurement: b.subarray(SNP.measurement, SNP.measurement + SNP.measurementBytes),
    reportedTcb: b.readBigUInt64LE(SNP.reportedTcb),
    signed: b.subarray(0, SNP.signedBytes),
    // An out-of-range r or s can never verify; zeros make that happen below.
    signatureP1363: r && s ? Buffer.concat([r, s]) : Buffer.alloc(96),
  };
}

export class TrustAnchorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustAnchorError';
  }
}

/**
 * The VCEK public key from a file's contents: PEM certificate(s) (VCEK first, then
 * optionally ASK and ARK, each checked against the next), a DER certificate (as AMD's
 * key distribution service serves it), or a PEM public key. Must be EC P-384.
 */
export function loadVcek(contents: Buffer): KeyObject {
  const text = contents.toString('latin1');
  let key: KeyObject;
  if (text.includes('-----BEGIN CERTIFICATE-----')) {
    const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const certs = pems.map((p) => new X509Certificate(p));
    for (let i = 0; i + 1 < certs.length; i++) {
      if (!certs[i]!.verify(certs[i + 1]!.publicKey)) {
        throw new TrustAnchorError(
          `certificate ${i + 1} in the file is not signed by certificate ${i + 2}; list the VCEK, then the ASK, then the ARK`,
        );
      }
    }
    const root = certs.at(-1)!;
    if (certs.length > 1 && !root.verify(root.publicKey)) throw new TrustAnchorError('the last certificate (the ARK) is not self-signed');
    key = certs[0]!.publicKey;
  } else if (text.includes('-----BEGIN PUBLIC KEY-----')) {
    key = createPublicKey(text);
  } else {
    try {
      key = new X509Certificate(contents).publicKey;
    } catch {
      throw new TrustAnchorError('expected a PEM or DER certificate, or a PEM public key');
    }
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    throw new TrustAnchorError('the VCEK must be an EC P-384 key (secp384r1)');
  }
  return key;
}

export interface SnpVerifierOptions {
  /** The chip's VCEK public key (loadVcek). */
  vcek: KeyObject;
  /** Allowed launch measurements, lower-case hex (96 characters each). */
  measurements: readonly string[];
}

export class SnpVerifier implements Verifier {
  readonly name = 'sev-snp';
  private readonly vcek: KeyObject;
  private readonly measurements: ReadonlySet<string>;

  constructor(o: SnpVerifierOptions) {
    if (o.measurements.length === 0) throw new TrustAnchorError('at least one allowed measurement is required');
    for (const m of o.measurements) if (!MEASUREMENT_HEX.test(m)) throw new TrustAnchorError(`not a 48-byte hex measurement: ${m}`);
    this.vcek = o.vcek;
    this.measurements = new Set(o.measurements);
  }

  verify(evidence: Evidence, expected: Expected): Verdict {
    if (evidence.tee !== 'sev-snp') return { ok: false, code: 'evidence_format', reason: `expected SEV-SNP evidence, got ${evidence.tee}` };
    const r = parseSnpReport(evidence.report);
    if (!r) {
      return {
        ok: false,
        code: 'report_truncated',
        reason: `the report is ${evidence.report.length} bytes; an SEV-SNP report is ${SNP.reportBytes}`,
      };
    }
    if (r.version < SNP.minVersion)
      return { ok: false, code: 'report_version_unsupported', reason: `report version ${r.version} is not supported` };
    if (r.signatureAlgo !== SNP.ecdsaP384Sha384) {
      return {
        ok: false,
        code: 'signature_algorithm_unsupported',
        reason: `signature algorithm ${r.signatureAlgo} is not ECDSA P-384 (1)`,
      };
    }
    const signatureOk = verifySignature('sha384', r.signed, { key: this.vcek, dsaEncoding: 'ieee-p1363' }, r.signatureP1363);
    if (!signatureOk)
      return { ok: false, code: 'signature_invalid', reason: 'the report signature does not verify under the trusted VCEK' };
    const want = reportDataFor(expected.nonce);
    if (!timingSafeEqual(r.reportData, want)) {
      return {
        ok: false,
        code: 'report_data_mismatch',
        reason: 'report_data does not bind this unseal’s nonce (replayed or foreign evidence)',
      };
    }
    if ((r.policy >> SNP.policyDebugBit) & 1n) {
      return { ok: false, code: 'debug_policy', reason: 'the guest policy allows debugging, so the host could read guest memory' };
    }
    const measurement = r.measurement.toString('hex');
    if (!this.measurements.has(measurement)) {
      return {
        ok: false,
        code: 'measurement_not_allowed',
        reason: `launch measurement ${measurement} is not in VAULT_ATTESTATION_MEASUREMENTS`,
      };
    }
    return {
      ok: true,
      claims: {
        tee: 'sev-snp',
        measurement,
        report_version: String(r.version),
        vmpl: String(r.vmpl),
        policy: `0x${r.policy.toString(16)}`,
        reported_tcb: `0x${r.reportedTcb.toString(16).padStart(16, '0')}`,
      },
    };
  }
}
