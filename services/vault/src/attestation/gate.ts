// The attestation gate the keyring passes before it derives or unwraps a key. It
// fails closed: no evidence, a verifier that is down, slow, throws or says no, or
// evidence made for another nonce all end in AttestationFailed, and the vault stays
// sealed. Every check uses a fresh nonce, so recorded evidence cannot be replayed.
import { randomBytes } from 'node:crypto';
import { TalonError, type ErrorCode } from '@talon/kit/errors';
import { reportDataFor, type EvidenceSource, type FailureCode, type Verifier } from './types.ts';

const RETRYABLE: ReadonlySet<FailureCode> = new Set(['evidence_unavailable', 'verifier_unavailable', 'verifier_timeout', 'verifier_error']);

/** What the operator should do next, per failure. */
const NEXT: Record<FailureCode, string> = {
  evidence_unavailable: 'check that the vault runs in a confidential VM or Kata/CoCo pod and can reach the TSM report interface',
  evidence_format: 'set VAULT_ATTESTATION to the TEE this machine actually has',
  report_truncated: 'the evidence is damaged; check the TEE driver and firmware',
  report_version_unsupported: 'update the verifier or the platform firmware',
  signature_algorithm_unsupported: 'update the verifier or the platform firmware',
  signature_invalid: 'the report is not signed by the trusted VCEK: check VAULT_ATTESTATION_TRUST_ANCHOR_FILE is this chip’s VCEK',
  report_data_mismatch: 'the evidence was not made for this unseal (replayed or forwarded); investigate the host',
  debug_policy: 'launch the guest with a policy that forbids debugging',
  measurement_not_allowed:
    'if this image is the one you deployed, add its measurement to VAULT_ATTESTATION_MEASUREMENTS; otherwise investigate',
  verifier_unavailable: 'start the local verifier or check VAULT_ATTESTATION_VERIFIER_URL',
  verifier_timeout: 'check the verifier, or raise VAULT_ATTESTATION_TIMEOUT_MS',
  verifier_refused: 'see the verifier’s logs for its policy decision',
  verifier_bad_response: 'the verifier does not speak the protocol in docs/confidential-computing.md',
  verifier_error: 'see the vault log for the error',
};

/** The vault stays sealed because attestation did not pass. The message carries no secret. */
export class AttestationFailed extends TalonError {
  readonly reason: FailureCode;
  constructor(reason: FailureCode, detail: string, options?: { cause?: unknown }) {
    const code: ErrorCode = RETRYABLE.has(reason) ? 'unavailable' : 'permission_denied';
    super(code, `attestation failed (${reason}): ${detail}. The vault stays sealed; ${NEXT[reason]}.`, options);
    this.name = 'AttestationFailed';
    this.reason = reason;
  }
}

export interface AttestationGateOptions {
  source: EvidenceSource;
  verifier: Verifier;
  timeoutMs: number;
  /** Tests: a fixed nonce. */
  nonce?: () => Uint8Array;
}

export class AttestationGate {
  private readonly source: EvidenceSource;
  private readonly verifier: Verifier;
  private readonly timeoutMs: number;
  private readonly nonce: () => Uint8Array;

  constructor(o: AttestationGateOptions) {
    this.source = o.source;
    this.verifier = o.verifier;
    this.timeoutMs = o.timeoutMs;
    this.nonce = o.nonce ?? (() => randomBytes(32));
  }

  describe(): string {
    return `${this.source.name} evidence, ${this.verifier.name} verifier`;
  }

  /** Resolves with the verifier's claims, or rejects with AttestationFailed (never anything else). */
  async check(): Promise<Readonly<Record<string, string>>> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        ac.abort();
        reject(new AttestationFailed('verifier_timeout', `no verdict within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([this.run(ac.signal), timeout]);
    } catch (err) {
      if (err instanceof AttestationFailed) throw err;
      throw new AttestationFailed('verifier_error', `the ${this.verifier.name} verifier failed: ${(err as Error)?.name ?? 'error'}`, {
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(signal: AbortSignal): Promise<Readonly<Record<string, string>>> {
    const nonce = this.nonce();
    let evidence;
    try {
      evidence = await this.source.collect(reportDataFor(nonce), signal);
    } catch (err) {
      throw new AttestationFailed('evidence_unavailable', (err as Error)?.message ?? 'no evidence', { cause: err });
    }
    const verdict = await this.verifier.verify(evidence, { nonce }, signal);
    if (!verdict.ok) throw new AttestationFailed(verdict.code, verdict.reason);
    return verdict.claims;
  }
}
