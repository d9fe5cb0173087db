// From the vault's configuration to an AttestationGate: which evidence source and
// which verifier each VAULT_ATTESTATION mode uses, and the checks across fields
// that one field alone cannot make. Boot stops (exit 78) on any problem.
import { readFileSync } from 'node:fs';
import { ConfigError, ConfigFieldError } from '@talon/kit/config';
import { AttestationGate } from './gate.ts';
import { HttpVerifier, LOCAL_ENDPOINT_EXPECT, parseLocalEndpoint } from './http-verifier.ts';
import { SnpVerifier, TrustAnchorError, loadVcek } from './snp.ts';
import { ConfigfsTsmSource, NoEvidence } from './tsm.ts';

export const ATTESTATION_MODES = ['none', 'sev-snp', 'tdx', 'http'] as const;
export type AttestationMode = (typeof ATTESTATION_MODES)[number];

export interface AttestationSettings {
  readonly attestation: AttestationMode;
  readonly attestationMeasurements: readonly string[];
  readonly attestationTrustAnchor: string | undefined;
  readonly attestationVerifierUrl: string | undefined;
  readonly attestationTsmDir: string;
  readonly attestationTimeoutMs: number;
}

/** What a mode needs and is missing. */
export function attestationProblems(s: AttestationSettings): ConfigFieldError[] {
  const out: ConfigFieldError[] = [];
  const mode = `VAULT_ATTESTATION=${s.attestation}`;
  if (s.attestation === 'sev-snp') {
    if (s.attestationMeasurements.length === 0)
      out.push(
        new ConfigFieldError(
          'VAULT_ATTESTATION_MEASUREMENTS',
          `is required with ${mode}`,
          'Set it to the launch measurement(s) of your guest image',
        ),
      );
    if (!s.attestationTrustAnchor)
      out.push(
        new ConfigFieldError(
          'VAULT_ATTESTATION_TRUST_ANCHOR_FILE',
          `is required with ${mode}`,
          "Point it at this chip's VCEK certificate (see docs/confidential-computing.md)",
        ),
      );
  }
  if (s.attestation === 'tdx' || s.attestation === 'http') {
    if (!s.attestationVerifierUrl || !parseLocalEndpoint(s.attestationVerifierUrl))
      out.push(new ConfigFieldError('VAULT_ATTESTATION_VERIFIER_URL', `is required with ${mode}`, `Set it to ${LOCAL_ENDPOINT_EXPECT}`));
  }
  return out;
}

/** The gate for the configured mode; undefined for `none` (unseal as before). */
export function attestationGate(
  s: AttestationSettings,
  read: (path: string) => Buffer = (p) => readFileSync(p),
): AttestationGate | undefined {
  const problems = attestationProblems(s);
  if (problems.length > 0) throw new ConfigError('vault', problems);
  const measurements = s.attestationMeasurements.map((m) => m.toLowerCase());
  const timeoutMs = s.attestationTimeoutMs;
  switch (s.attestation) {
    case 'none':
      return undefined;
    case 'sev-snp': {
      const file = s.attestationTrustAnchor!;
      let vcek;
      try {
        vcek = loadVcek(read(file));
      } catch (err) {
        const why =
          err instanceof TrustAnchorError
            ? err.message
            : `cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
        throw new ConfigError('vault', [
          new ConfigFieldError('VAULT_ATTESTATION_TRUST_ANCHOR_FILE', `${file}: ${why}`, "Point it at this chip's VCEK certificate"),
        ]);
      }
      return new AttestationGate({
        source: new ConfigfsTsmSource('sev-snp', s.attestationTsmDir),
        verifier: new SnpVerifier({ vcek, measurements }),
        timeoutMs,
      });
    }
    case 'tdx':
    case 'http':
      return new AttestationGate({
        source: s.attestation === 'tdx' ? new ConfigfsTsmSource('tdx', s.attestationTsmDir) : new NoEvidence(),
        verifier: new HttpVerifier({ endpoint: parseLocalEndpoint(s.attestationVerifierUrl!)!, measurements }),
        timeoutMs,
      });
  }
}
