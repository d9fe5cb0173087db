// gRPC handlers. VaultService answers only spiffe://talon/egress, VaultAdminService
// only spiffe://talon/admin (enforced by kit startGrpcServer); no admin method
// returns a value. Request Buffers that carried a value or passphrase are zeroed
// here once used.
import type { ServerStreamHandler, UnaryHandler } from '@talon/kit/grpc';
import { InvalidArgument } from '@talon/kit/errors';
import type {
  AuditChainRequest,
  AuditChainResponse,
  AuditLogRequest,
  AuditLogResponse,
  AuditRecord,
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
  VaultState,
  VerifySignatureResponse,
  WatchRequest,
} from '@talon/proto';
import type { AuditWriter } from './audit.ts';
import { countResolve } from './metrics.ts';
import { auditFilter, isFiltered, type AuditFilter } from './audit-query.ts';
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
    const r = await countResolve(vault.resolve(req, ctx.peer));
    zeroAfterResponse(r.value);
    return { value: r.value, version: r.version, policy: r.policy };
  };
  const scanIndex: UnaryHandler<unknown, ScanIndexResponse> = async (_req, ctx) => vault.scanIndex(ctx.peer);
  const verifySignature: UnaryHandler<VerifySignatureRequest, VerifySignatureResponse> = async (req, ctx) => ({
    valid: await vault.verifySignature(req, ctx.peer),
  });
  const listSecrets: UnaryHandler<unknown, ListSecretsResponse> = async () => ({ secrets: await vault.listSecrets() });
  // Open until egress goes away or the vault shuts down; sends only when the state moves.
  const watch: ServerStreamHandler<WatchRequest, VaultState> = async (_req, _ctx, stream) => {
    const sub = vault.watch((s) => stream.write({ epoch: s.epoch, sealed: s.sealed }));
    try {
      await sub.done;
      if (!stream.signal.aborted) await new Promise((resolve) => stream.signal.addEventListener('abort', resolve, { once: true }));
    } finally {
      sub.unsubscribe();
    }
  };
  return { status, resolve, scanIndex, verifySignature, listSecrets, watch };
}

/** `queryAudit`: filtered reads (audit-query.ts); without it a filtered AuditLog is refused. */
export function adminHandlers(vault: Vault, audit: AuditWriter, queryAudit?: (f: AuditFilter) => Promise<AuditRecord[]>) {
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
  const auditLog: UnaryHandler<AuditLogRequest, AuditLogResponse> = async (req) => {
    const f = auditFilter(req);
    if (!isFiltered(f)) return { records: await audit.recent(f.limit) };
    if (!queryAudit) throw new InvalidArgument('this vault cannot filter its audit log; ask without filters');
    return { records: await queryAudit(f) };
  };
  const auditChain: UnaryHandler<AuditChainRequest, AuditChainResponse> = (req) =>
    audit.chainPage(req.afterId, req.limit > 0 ? Math.min(req.limit, 2000) : 500);
  return { status, unseal, seal, changePassphrase, rotateKey, setSecret, listSecrets, deleteSecret, rotateSecret, auditLog, auditChain };
}
