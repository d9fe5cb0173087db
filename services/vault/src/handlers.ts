// gRPC handlers. VaultService answers only spiffe://talon/egress, VaultAdminService
// only spiffe://talon/admin (enforced by kit startGrpcServer); no admin method
// returns a value. Request Buffers that carried a value or passphrase are zeroed
// here once used.
import type { UnaryHandler } from '@talon/kit/grpc';
import type {
  AuditLogRequest,
  AuditLogResponse,
  ChangePassphraseRequest,
  DeleteSecretRequest,
  DeleteSecretResponse,
  ListSecretsResponse,
  ResolveRequest,
  ResolveResponse,
  RotateKeyResponse,
  RotateSecretRequest,
  ScanIndexResponse,
  SecretInfo,
  SetSecretRequest,
  StatusResponse,
  UnsealRequest,
  VerifySignatureRequest,
  VerifySignatureResponse,
} from '@talon/proto';
import type { AuditWriter } from './audit.ts';
import type { Vault } from './vault.ts';

function wipe(b: Uint8Array | undefined): void {
  b?.fill(0);
}

function utf8(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

/**
 * grpc-js serialises a unary response synchronously when the handler's promise
 * settles; a macrotask later the plaintext Buffer has been copied into the frame
 * and can be zeroed.
 */
function zeroAfterResponse(b: Buffer): void {
  setImmediate(() => b.fill(0));
}

export function egressHandlers(vault: Vault) {
  const status: UnaryHandler<unknown, StatusResponse> = () => vault.status();
  const resolve: UnaryHandler<ResolveRequest, ResolveResponse> = async (req, ctx) => {
    const r = await vault.resolve(req, ctx.peer);
    zeroAfterResponse(r.value);
    return { value: r.value, version: r.version, policy: r.policy };
  };
  const scanIndex: UnaryHandler<unknown, ScanIndexResponse> = async (_req, ctx) => vault.scanIndex(ctx.peer);
  const verifySignature: UnaryHandler<VerifySignatureRequest, VerifySignatureResponse> = async (req, ctx) => ({
    valid: await vault.verifySignature(req, ctx.peer),
  });
  const listSecrets: UnaryHandler<unknown, ListSecretsResponse> = async () => ({ secrets: await vault.listSecrets() });
  return { status, resolve, scanIndex, verifySignature, listSecrets };
}

export function adminHandlers(vault: Vault, audit: AuditWriter) {
  const status: UnaryHandler<unknown, StatusResponse> = () => vault.status();
  const unseal: UnaryHandler<UnsealRequest, StatusResponse> = (req, ctx) => vault.unseal(utf8(req.passphrase), ctx.peer);
  const seal: UnaryHandler<unknown, StatusResponse> = (_req, ctx) => vault.seal(ctx.peer);
  const changePassphrase: UnaryHandler<ChangePassphraseRequest, StatusResponse> = (req, ctx) =>
    vault.changePassphrase(utf8(req.oldPassphrase), utf8(req.newPassphrase), ctx.peer);
  const rotateKey: UnaryHandler<unknown, RotateKeyResponse> = (_req, ctx) => vault.rotateKey(ctx.peer);
  const setSecret: UnaryHandler<SetSecretRequest, SecretInfo> = async (req, ctx) => {
    try {
      return await vault.setSecret(req.name, req.value, req.policy, ctx.peer);
    } finally {
      wipe(req.value);
    }
  };
  const listSecrets: UnaryHandler<unknown, ListSecretsResponse> = async () => ({ secrets: await vault.listSecrets() });
  const deleteSecret: UnaryHandler<DeleteSecretRequest, DeleteSecretResponse> = async (req, ctx) => ({
    versionsDeleted: await vault.deleteSecret(req.name, ctx.peer),
  });
  const rotateSecret: UnaryHandler<RotateSecretRequest, SecretInfo> = async (req, ctx) => {
    try {
      return await vault.rotateSecret(req.name, req.value, ctx.peer);
    } finally {
      wipe(req.value);
    }
  };
  const auditLog: UnaryHandler<AuditLogRequest, AuditLogResponse> = async (req) => ({
    records: await audit.recent(req.limit > 0 ? Math.min(req.limit, 1000) : 100),
  });
  return { status, unseal, seal, changePassphrase, rotateKey, setSecret, listSecrets, deleteSecret, rotateSecret, auditLog };
}
