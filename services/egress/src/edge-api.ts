// EgressService: what the gateway may ask egress besides proxying. The gateway
// checks webhook signatures and shows operators secret names without holding a
// key or talking to the vault: egress relays to the vault, naming the gateway as
// the principal it authenticated.
import { randomUUID } from 'node:crypto';
import { InvalidArgument } from '@talon/kit/errors';
import type { UnaryHandler } from '@talon/kit/grpc';
import { placementName } from '@talon/kit/placements';
import {
  Placement,
  WebhookScheme,
  type RedactTextRequest,
  type RedactTextResponse,
  type ListSecretNamesResponse,
  type VerifyWebhookRequest,
  type VerifyWebhookResponse,
} from '@talon/proto';
import type { UserRedaction } from './scanning.ts';
import type { VaultLink } from './vault-client.ts';

/** Limits of one RedactText call (gRPC's own cap is 4 MiB per message). */
export const REDACT_MAX_TEXTS = 256;
export const REDACT_MAX_BYTES = 2 * 1024 * 1024;

/** A scheme the proto defines. Egress passes it on unchanged; the vault implements each one (its signature.ts). */
function isWebhookScheme(s: number): s is WebhookScheme {
  return s !== WebhookScheme.WEBHOOK_SCHEME_UNSPECIFIED && (Object.values(WebhookScheme) as number[]).includes(s);
}

export function edgeHandlers(vault: VaultLink, scanner: { redactForUser(text: string): UserRedaction }) {
  const redactText: UnaryHandler<RedactTextRequest, RedactTextResponse> = async (req) => {
    if (req.texts.length > REDACT_MAX_TEXTS) throw new InvalidArgument(`at most ${REDACT_MAX_TEXTS} texts per RedactText call`);
    let size = 0;
    for (const t of req.texts) size += Buffer.byteLength(t);
    if (size > REDACT_MAX_BYTES) throw new InvalidArgument(`texts of one RedactText call may hold at most ${REDACT_MAX_BYTES} bytes`);
    return { texts: req.texts.map((t) => (t === '' ? { text: t, labels: [] } : scanner.redactForUser(t))) };
  };
  const verifyWebhook: UnaryHandler<VerifyWebhookRequest, VerifyWebhookResponse> = async (req, ctx) => {
    if (!isWebhookScheme(req.scheme)) throw new InvalidArgument('scheme must be HMAC_SHA256_HEX, TOKEN or ED25519');
    const valid = await vault.verifySignature({
      secretName: req.secretName,
      scheme: req.scheme,
      message: req.message,
      signature: req.signature,
      principal: ctx.peer,
      requestId: randomUUID(),
    });
    return { valid };
  };
  const listSecretNames: UnaryHandler<unknown, ListSecretNamesResponse> = async () => ({
    secrets: (await vault.listSecrets()).map((s) => ({
      name: s.name,
      version: s.version,
      hosts: s.policy?.hosts ?? [],
      principals: s.policy?.principals ?? [],
      placement: s.policy?.verifyOnly
        ? 'verify'
        : // Unspecified is stored as bearer (the vault's default).
          `${placementName(s.policy?.placement || Placement.PLACEMENT_BEARER)}${s.policy?.field ? ` ${s.policy.field}` : ''}`,
      createdAtMs: s.createdAtMs,
      expiresAtMs: s.policy?.expiresAtMs ?? 0,
    })),
  });
  return { verifyWebhook, listSecretNames, redactText };
}
