// The attestation contract (docs/confidential-computing.md): an EvidenceSource
// collects evidence bound to a fresh nonce, a Verifier judges it, and the gate
// (gate.ts) keeps the vault sealed unless the verdict is ok. This file owns the
// binding of a nonce into the 64-byte report_data field every TEE report carries.
import { createHash } from 'node:crypto';

/** The TEE that produced a piece of evidence. `none`: the verifier collects its own (http mode). */
export type TeeKind = 'sev-snp' | 'tdx' | 'none';

export interface Evidence {
  tee: TeeKind;
  /** The raw report or quote (configfs-tsm `outblob`); empty for `none`. */
  report: Uint8Array;
  /** Extra material the provider returned (configfs-tsm `auxblob`: the SNP certificate table), if any. */
  aux?: Uint8Array;
}

export interface Expected {
  /** Fresh for every unseal; the evidence must carry reportDataFor(nonce). */
  nonce: Uint8Array;
}

/** Stable, non-secret failure codes; they end up in the audit trail as `attestation_failed:<code>`. */
export type FailureCode =
  | 'evidence_unavailable'
  | 'evidence_format'
  | 'report_truncated'
  | 'report_version_unsupported'
  | 'signature_algorithm_unsupported'
  | 'signature_invalid'
  | 'report_data_mismatch'
  | 'debug_policy'
  | 'measurement_not_allowed'
  | 'verifier_unavailable'
  | 'verifier_timeout'
  | 'verifier_refused'
  | 'verifier_bad_response'
  | 'verifier_error';

export type Verdict = { ok: true; claims: Readonly<Record<string, string>> } | { ok: false; code: FailureCode; reason: string };

export interface Verifier {
  readonly name: string;
  verify(evidence: Evidence, expected: Expected, signal: AbortSignal): Verdict | Promise<Verdict>;
}

export interface EvidenceSource {
  readonly name: string;
  /** Evidence whose report_data field is exactly `reportData` (64 bytes). */
  collect(reportData: Uint8Array, signal: AbortSignal): Promise<Evidence>;
}

/** Domain-separated so evidence made for another protocol cannot be replayed here. */
const REPORT_DATA_CONTEXT = Buffer.from('talon-vault-unseal-attestation-v1\0', 'utf8');

/** The 64-byte report_data that binds evidence to one unseal: SHA-512(context || nonce). */
export function reportDataFor(nonce: Uint8Array): Buffer {
  return createHash('sha512').update(REPORT_DATA_CONTEXT).update(nonce).digest();
}

export const REPORT_DATA_BYTES = 64;
/** SEV-SNP MEASUREMENT and TDX MRTD are both SHA-384 digests. */
export const MEASUREMENT_HEX = /^[0-9a-f]{96}$/;
