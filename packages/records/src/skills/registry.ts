// The skill registry (KV talon_skills, object store talon_skill_binaries). Its write
// side, used by `talon skills ...` (NATS identity `admin`) and by tests, and the
// read-only view services use (direct gets, no consumer). Install verifies the package (signature by a trusted key,
// manifest, module policy) before anything is stored; approval is bound to the exact
// binary hash, so a changed binary is a new, pending skill.
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { KV_BUCKETS, OBJECT_BUCKETS, publisherKey, skillRecordKey } from '@talon/kit/subjects';
import type { NatsConnection } from '@talon/kit/nats';
import { SkillRecord, SkillStatus, TrustedPublisher } from '@talon/proto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { liveEntry, openBucket, readAll, type Bucket } from '../kv.ts';
import { SkillPackageError } from './package/errors.ts';
import { DEFAULT_ENTRYPOINT, requestedPermissions, skillId } from './package/manifest.ts';
import { DEFAULT_INSTALL_LIMITS, verifyPackage, type PackageBytes, type VerifiedPackage } from './package/package.ts';
import { normalizePublicKey, publisherKeyId, sha256Hex, tryPublisherKeyId, verifySkillSignature } from './package/signing.ts';

/** Read-only view of talon_skills by direct get (gateway, egress): records and trusted publishers. */
export class SkillRecords {
  private b!: Bucket;
  private readonly nc: NatsConnection;
  constructor(nc: NatsConnection) {
    this.nc = nc;
  }
  async open(jsm?: JetStreamManager): Promise<this> {
    this.b = await openBucket(this.nc, KV_BUCKETS.skills, jsm);
    return this;
  }
  async record(name: string, version: string): Promise<SkillRecord | undefined> {
    const e = await this.b.get(skillRecordKey(name, version));
    return e ? SkillRecord.decode(e.value) : undefined;
  }
  /** The trusted-publisher entry for the key a record names, if any. */
  async publisherOf(r: Pick<SkillRecord, 'publisherKey'>): Promise<TrustedPublisher | undefined> {
    const keyId = tryPublisherKeyId(r.publisherKey);
    const e = keyId ? await this.b.get(publisherKey(keyId)) : null;
    return e ? TrustedPublisher.decode(e.value) : undefined;
  }
  async records(): Promise<SkillRecord[]> {
    return (await readAll(this.b, 'skill.', (v) => SkillRecord.decode(v))).map((r) => r.value);
  }
}

export class RegistryError extends Error {
  readonly code: 'not_found' | 'conflict' | 'integrity_error' | 'invalid_argument';
  constructor(code: RegistryError['code'], message: string) {
    super(message);
    this.name = 'RegistryError';
    this.code = code;
  }
}

export type InstallOutcome = 'installed' | 'unchanged' | 'replaced';

export interface InstallResult {
  outcome: InstallOutcome;
  record: SkillRecord;
  pkg: VerifiedPackage;
  /** Hash of the binary this install replaced (outcome "replaced"). */
  previousSha256?: string;
  previousStatus?: SkillStatus;
}

export class SkillAdmin {
  private readonly nc: NatsConnection;
  private kvP: Promise<KV> | undefined;
  private osP: Promise<ObjectStore> | undefined;

  constructor(nc: NatsConnection) {
    this.nc = nc;
  }

  private kv(): Promise<KV> {
    this.kvP ??= new Kvm(this.nc).open(KV_BUCKETS.skills);
    return this.kvP;
  }

  private os(): Promise<ObjectStore> {
    this.osP ??= new Objm(this.nc).open(OBJECT_BUCKETS.skillBinaries);
    return this.osP;
  }

  async publishers(): Promise<TrustedPublisher[]> {
    const kv = await this.kv();
    const out: TrustedPublisher[] = [];
    for await (const k of await kv.keys('publisher.>')) {
      const e = liveEntry(await kv.get(k));
      if (e) out.push(TrustedPublisher.decode(e.value));
    }
    return out.sort((a, b) => a.addedAtMs - b.addedAtMs);
  }

  async trust(publicKey: string, label = ''): Promise<TrustedPublisher> {
    const key = normalizePublicKey(publicKey);
    const rec: TrustedPublisher = { key, keyId: publisherKeyId(key), label: label.slice(0, 200), addedAtMs: Date.now() };
    await (await this.kv()).put(publisherKey(rec.keyId), TrustedPublisher.encode(rec).finish());
    return rec;
  }

  /** Removes trust in a key (by key or key id); skills it signed stop running. Returns the removed entry. */
  async untrust(keyOrId: string): Promise<TrustedPublisher> {
    const id = /^[0-9a-f]{16}$/.test(keyOrId) ? keyOrId : publisherKeyId(keyOrId);
    const kv = await this.kv();
    const e = liveEntry(await kv.get(publisherKey(id)));
    if (!e) throw new RegistryError('not_found', `no trusted publisher ${keyOrId} (see \`talon skills trust --list\`)`);
    await kv.delete(publisherKey(id));
    return TrustedPublisher.decode(e.value);
  }

  async get(name: string, version: string): Promise<{ record: SkillRecord; revision: number } | undefined> {
    const e = liveEntry(await (await this.kv()).get(skillRecordKey(name, version)));
    if (!e) return undefined;
    return { record: SkillRecord.decode(e.value), revision: e.revision };
  }

  async list(): Promise<SkillRecord[]> {
    const kv = await this.kv();
    const out: SkillRecord[] = [];
    for await (const k of await kv.keys('skill.>')) {
      const e = liveEntry(await kv.get(k));
      if (e) out.push(SkillRecord.decode(e.value));
    }
    return out.sort((a, b) => (a.name === b.name ? a.version.localeCompare(b.version) : a.name.localeCompare(b.name)));
  }

  /** Verifies and stores a package as a pending skill (approval is a separate step). */
  async install(
    pkgBytes: PackageBytes,
    limits: { memoryCapMb: number; maxModuleBytes: number } = DEFAULT_INSTALL_LIMITS,
  ): Promise<InstallResult> {
    const trusted = (await this.publishers()).map((p) => p.key);
    const pkg = verifyPackage(pkgBytes, { trustedKeys: trusted, ...limits });
    const { manifest } = pkg;
    const existing = await this.get(manifest.name, manifest.version);
    if (existing && existing.record.sha256 === pkg.sha256 && existing.record.manifestJson === pkg.manifestCanonical) {
      await this.storeBinary(pkg);
      return { outcome: 'unchanged', record: existing.record, pkg };
    }
    await this.storeBinary(pkg);
    const record: SkillRecord = {
      name: manifest.name,
      version: manifest.version,
      sha256: pkg.sha256,
      manifestJson: pkg.manifestCanonical,
      status: SkillStatus.SKILL_STATUS_PENDING,
      publisherKey: pkg.signature.publicKey,
      signature: pkg.signature.signature,
      requested: requestedPermissions(manifest),
      approved: undefined,
      description: manifest.description,
      inputSchemaJson: JSON.stringify(manifest.inputSchema),
      entrypoint: manifest.entrypoint ?? DEFAULT_ENTRYPOINT,
      wasmSize: pkg.wasm.byteLength,
      moduleMaxPages: pkg.module.maxPages ?? 0,
      installedAtMs: Date.now(),
      approvedAtMs: 0,
      revokedAtMs: 0,
      approvedBy: '',
      revokedReason: '',
      approvedSha256: '',
      imports: pkg.module.imports.map((i) => `${i.module}::${i.name}`),
    };
    const kv = await this.kv();
    const key = skillRecordKey(manifest.name, manifest.version);
    if (existing) await kv.update(key, SkillRecord.encode(record).finish(), existing.revision);
    else await kv.create(key, SkillRecord.encode(record).finish());
    return existing
      ? { outcome: 'replaced', record, pkg, previousSha256: existing.record.sha256, previousStatus: existing.record.status }
      : { outcome: 'installed', record, pkg };
  }

  /** Puts the verified binary under its hash unless an intact copy is already there. */
  private async storeBinary(pkg: VerifiedPackage): Promise<void> {
    const os = await this.os();
    const current = await os.getBlob(pkg.sha256).catch(() => null);
    if (current && sha256Hex(current) === pkg.sha256) return;
    await os.putBlob(
      { name: pkg.sha256, description: `${skillId(pkg.manifest.name, pkg.manifest.version)} (${pkg.wasm.byteLength} bytes)` },
      pkg.wasm,
    );
  }

  /** Grants a pending (or revoked) skill the permissions its signed manifest requests. */
  async approve(name: string, version: string, approvedBy: string): Promise<SkillRecord> {
    const id = skillId(name, version);
    const cur = await this.get(name, version);
    if (!cur) throw new RegistryError('not_found', `skill ${id} is not installed (see \`talon skills list\`)`);
    const r = cur.record;
    if (r.status === SkillStatus.SKILL_STATUS_APPROVED && r.approvedSha256 === r.sha256) return r;
    // Re-check what approval vouches for: the stored binary, its signature and its publisher.
    const blob = await (await this.os()).getBlob(r.sha256);
    if (!blob || sha256Hex(blob) !== r.sha256) {
      throw new RegistryError('integrity_error', `the stored binary of ${id} is missing or does not match its hash; reinstall the package`);
    }
    if (!verifySkillSignature(r.publisherKey, r.signature, r.sha256, r.manifestJson)) {
      throw new RegistryError('integrity_error', `the signature of ${id} does not verify; reinstall the package`);
    }
    const trusted = (await this.publishers()).some((p) => p.key === r.publisherKey);
    if (!trusted) throw new RegistryError('integrity_error', `${id} is signed by ${r.publisherKey}, which is no longer trusted`);
    const next: SkillRecord = {
      ...r,
      status: SkillStatus.SKILL_STATUS_APPROVED,
      approved: r.requested,
      approvedSha256: r.sha256,
      approvedAtMs: Date.now(),
      approvedBy,
      revokedAtMs: 0,
      revokedReason: '',
    };
    await this.update(name, version, next, cur.revision);
    return next;
  }

  async revoke(name: string, version: string, reason = ''): Promise<SkillRecord> {
    const cur = await this.get(name, version);
    if (!cur) throw new RegistryError('not_found', `skill ${skillId(name, version)} is not installed (see \`talon skills list\`)`);
    const next: SkillRecord = {
      ...cur.record,
      status: SkillStatus.SKILL_STATUS_REVOKED,
      revokedAtMs: Date.now(),
      revokedReason: reason.slice(0, 200),
    };
    await this.update(name, version, next, cur.revision);
    return next;
  }

  private async update(name: string, version: string, rec: SkillRecord, revision: number): Promise<void> {
    try {
      await (await this.kv()).update(skillRecordKey(name, version), SkillRecord.encode(rec).finish(), revision);
    } catch (err) {
      if (/wrong last sequence/i.test(String((err as Error).message))) {
        throw new RegistryError('conflict', `skill ${skillId(name, version)} changed while this command ran; run it again`);
      }
      throw err;
    }
  }
}

export { SkillPackageError };
