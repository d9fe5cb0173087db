// The gateway's calls to egress's gRPC EgressService (mTLS, egress identity
// pinned): webhook signature checks done by the vault, and secret names for
// operators. The gateway never sees a key or a secret value.
import { createClient, GrpcStatus, unary, type TlsMaterial } from '@talon/kit/grpc';
import { TalonError } from '@talon/kit/errors';
import { EgressServiceClient, type RedactedText, type SecretName, type VerifyWebhookRequest } from '@talon/proto';
import type { SignatureCheck } from './channels/types.ts';
import type { TextRedactor } from './redaction.ts';

function unavailable(err: unknown, what: string, addr: string): TalonError {
  const te = err instanceof TalonError ? err : new TalonError('internal', String(err));
  const grpc = (te.cause as { code?: number } | undefined)?.code;
  if (grpc === GrpcStatus.UNIMPLEMENTED) {
    return new TalonError('unavailable', `egress at ${addr} does not offer EgressService/${what} (is it an older egress?)`, { cause: err });
  }
  if (te.code === 'policy_denied') {
    // The vault's own refusal (not a verify-only key, principal not allowed, expired): the operator fixes the secret.
    return new TalonError('unavailable', `the vault refused ${what}: ${te.message}`, { cause: err });
  }
  if (te.code === 'permission_denied' || te.code === 'unauthenticated') {
    return new TalonError('unavailable', `egress refused the gateway's ${what} call (${te.code}); check the gateway certificate`, {
      cause: err,
    });
  }
  if (te.code === 'vault_sealed')
    return new TalonError('unavailable', 'the vault is sealed; webhooks cannot be verified until `talon vault unseal`', { cause: err });
  if (te.code === 'not_found') return te;
  return new TalonError('unavailable', `egress could not answer ${what} (${te.code}); retry shortly`, { cause: err });
}

export interface WebhookVerifier {
  verify(check: SignatureCheck): Promise<boolean>;
}

export class EgressApi implements WebhookVerifier, TextRedactor {
  private readonly client: EgressServiceClient;
  private readonly addr: string;

  constructor(addr: string, tls: TlsMaterial) {
    this.addr = addr;
    this.client = createClient(EgressServiceClient, addr, tls, 'egress');
  }

  /** True when the signature is valid; throws `unavailable` when it cannot be checked, `not_found` when the secret is missing. */
  async verify(check: SignatureCheck): Promise<boolean> {
    const req: VerifyWebhookRequest = {
      secretName: check.secretName,
      scheme: check.scheme,
      message: check.message,
      signature: check.signature,
    };
    try {
      const res = await unary(this.client, this.client.verifyWebhook, req, { timeoutMs: 5000 });
      return res.valid;
    } catch (err) {
      const te = unavailable(err, 'VerifyWebhook', this.addr);
      if (te.code === 'not_found') {
        throw new TalonError(
          'unavailable',
          `webhook secret ${check.secretName} is not in the vault (talon secrets set ${check.secretName} ...)`,
          { cause: err },
        );
      }
      throw te;
    }
  }

  /** Texts with every credential replaced (egress's leak scanner); `unavailable` when they cannot be checked. */
  async redactTexts(texts: readonly string[]): Promise<RedactedText[]> {
    try {
      const res = await unary(this.client, this.client.redactText, { texts: [...texts] }, { timeoutMs: 5000 });
      return res.texts;
    } catch (err) {
      const te = err instanceof TalonError ? err : undefined;
      if (te?.code === 'invalid_argument') throw new TalonError('payload_too_large', te.message, { cause: err });
      const u = unavailable(err, 'RedactText', this.addr);
      throw new TalonError('unavailable', `messages cannot be checked for credentials right now: ${u.message}`, { cause: err });
    }
  }

  async secretNames(): Promise<SecretName[]> {
    try {
      const res = await unary(this.client, this.client.listSecretNames, {}, { timeoutMs: 5000 });
      return res.secrets;
    } catch (err) {
      throw unavailable(err, 'ListSecretNames', this.addr);
    }
  }

  close(): void {
    this.client.close();
  }
}
