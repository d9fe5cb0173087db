// The sandbox node's read side of the skill registry. Records come from the KV
// bucket by direct get and are cached; every change to the bucket arrives on a plain
// subscription to its subjects and drops the cached entry at once (approve, revoke,
// re-install, untrust take effect on the next call). Binaries come from the object
// store by direct get, are checked against the approved SHA-256 and cached in memory
// and on disk (re-hashed whenever read back). No consumer is ever created.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV, type KvEntry } from '@nats-io/kv';
import type { Subscription } from '@nats-io/transport-node';
import { KV_BUCKETS, OBJECT_BUCKETS, publisherKey, skillRecordKey } from '@talon/kit/subjects';
import type { Logger } from '@talon/kit/log';
import { type NatsConnection, openDirectKv } from '@talon/kit/nats';
import { SkillRecord, SkillStatus, TrustedPublisher } from '@talon/proto';
import { SkillRunError } from '../errors.ts';
import { compareVersions, liveEntry } from '@talon/records';
import { VERSION_PATTERN, skillId, sha256Hex, tryPublisherKeyId } from '@talon/records/skills';
import { readObject } from './objects.ts';
import { checkApproved, checkBinary, statusName, type ApprovedSkill, type NodeCaps } from './records.ts';

export interface ReaderOptions {
  caps: NodeCaps;
  /** Directory for verified binaries (undefined: memory only). */
  cacheDir: string | undefined;
  memoryCacheBytes: number;
  /** Upper bound on how long a cached record is trusted without a change notification. */
  recordTtlMs: number;
  log: Logger;
}

interface Cached<T> {
  value: T;
  revision: number;
  at: number;
}

export interface RunnableSkill extends ApprovedSkill {
  wasm: Uint8Array;
  maxPages: number;
}

export { compareVersions };

export class SkillReader {
  private readonly nc: NatsConnection;
  private readonly opts: ReaderOptions;
  private kv!: KV;
  private jsm!: JetStreamManager;
  private sub: Subscription | undefined;
  private readonly entries = new Map<string, Cached<KvEntry | null>>();
  private readonly approved = new Map<string, { recordRev: number; keyId: string; publisherRev: number; skill: ApprovedSkill }>();
  private readonly binaries = new Map<string, Uint8Array>();
  private binaryBytes = 0;
  private readonly inflight = new Map<string, Promise<unknown>>();
  private readonly checkedBinaries = new WeakMap<ApprovedSkill, { wasm: Uint8Array; maxPages: number }>();
  /** Counters for metrics and tests. */
  readonly counters = { recordFetches: 0, binaryFetches: 0, diskHits: 0, invalidations: 0 };

  constructor(nc: NatsConnection, opts: ReaderOptions) {
    this.nc = nc;
    this.opts = opts;
  }

  async start(): Promise<void> {
    this.jsm = await jetstreamManager(this.nc, { checkAPI: false });
    this.kv = await openDirectKv(this.nc, KV_BUCKETS.skills);
    if (this.opts.cacheDir) mkdirSync(this.opts.cacheDir, { recursive: true, mode: 0o700 });
    const prefix = `$KV.${KV_BUCKETS.skills}.`;
    this.sub = this.nc.subscribe(`${prefix}>`, {
      callback: (_err, msg) => {
        const key = msg.subject.slice(prefix.length);
        this.counters.invalidations += 1;
        this.entries.delete(key);
        if (key.startsWith('publisher.')) this.approved.clear();
        if (key.startsWith('skill.')) this.entries.delete(`latest.${key.split('.')[1]}`);
      },
    });
    // Changes published while disconnected were missed: forget everything on reconnect.
    void (async () => {
      for await (const s of this.nc.status()) if (s.type === 'reconnect') this.entries.clear();
    })();
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  private async entry(key: string): Promise<KvEntry | null> {
    const c = this.entries.get(key);
    if (c && Date.now() - c.at < this.opts.recordTtlMs) return c.value;
    this.counters.recordFetches += 1;
    let e: KvEntry | null;
    try {
      e = await this.kv.get(key);
    } catch (err) {
      this.opts.log.warn({ key, error: String((err as Error)?.message ?? err) }, 'skill registry read failed');
      throw new SkillRunError('unavailable', 'the skill registry (NATS KV) is unreachable; try again', { cause: err });
    }
    const value = liveEntry(e);
    this.entries.set(key, { value, revision: value?.revision ?? 0, at: Date.now() });
    return value;
  }

  /** Highest approved version of `name`; throws not_found / not_approved naming what is installed. */
  private async latestApproved(name: string): Promise<string> {
    const cacheKey = `latest.${name}`;
    const c = this.entries.get(cacheKey);
    if (c && Date.now() - c.at < this.opts.recordTtlMs && c.value) return new TextDecoder().decode(c.value.value);
    const prefix = `$KV.${KV_BUCKETS.skills}.skill.${name}.`;
    let subjects: string[];
    try {
      const info = await this.jsm.streams.info(`KV_${KV_BUCKETS.skills}`, { subjects_filter: `${prefix}>` });
      subjects = Object.keys(info.state.subjects ?? {});
    } catch (err) {
      throw new SkillRunError('unavailable', 'the skill registry (NATS KV) is unreachable; try again', { cause: err });
    }
    const versions = subjects.map((s) => s.slice(prefix.length)).filter((v) => VERSION_PATTERN.test(v));
    versions.sort(compareVersions).reverse();
    const others: Array<{ v: string; status: SkillStatus }> = [];
    for (const v of versions) {
      const e = await this.entry(skillRecordKey(name, v));
      if (!e) continue;
      const status = SkillRecord.decode(e.value).status;
      if (status === SkillStatus.SKILL_STATUS_APPROVED) {
        this.entries.set(cacheKey, { value: { value: new TextEncoder().encode(v) } as KvEntry, revision: 0, at: Date.now() });
        return v;
      }
      others.push({ v, status });
    }
    if (others.length > 0) {
      const list = others.slice(0, 5).map((o) => `${o.v} (${statusName(o.status)})`);
      throw new SkillRunError(
        'not_approved',
        `skill ${name} has no approved version (installed: ${list.join(', ')}); an operator runs \`talon skills approve ${skillId(name, others[0]!.v)}\``,
      );
    }
    throw new SkillRunError('not_found', `skill ${name} is not installed (see \`talon skills list\`)`);
  }

  /** Finds an approved, verified skill version (not yet its binary). Throws SkillRunError. */
  async approvedSkill(name: string, version: string): Promise<ApprovedSkill> {
    const v = version || (await this.latestApproved(name));
    const key = skillRecordKey(name, v);
    const e = await this.entry(key);
    if (!e) throw new SkillRunError('not_found', `skill ${skillId(name, v)} is not installed (see \`talon skills list\`)`);
    // Verification (signature, manifest, approval) is redone only when the record or its publisher entry changes.
    const cached = this.approved.get(key);
    if (cached && cached.recordRev === e.revision) {
      const pe = cached.keyId ? await this.entry(publisherKey(cached.keyId)) : null;
      if (cached.publisherRev === (pe?.revision ?? 0)) return cached.skill;
    }
    const record = SkillRecord.decode(e.value);
    const keyId = tryPublisherKeyId(record.publisherKey) ?? ''; // checkApproved reports an invalid key
    const pe = keyId ? await this.entry(publisherKey(keyId)) : null;
    const skill = checkApproved(record, pe ? TrustedPublisher.decode(pe.value) : undefined, this.opts.caps);
    this.approved.set(key, { recordRev: e.revision, keyId, publisherRev: pe?.revision ?? 0, skill });
    return skill;
  }

  /** Adds the verified binary to an approved skill. Throws SkillRunError. */
  async runnable(skill: ApprovedSkill): Promise<RunnableSkill> {
    const sha = skill.record.sha256;
    const wasm = await this.binary(sha);
    // Hashing and inspecting once per (approval, binary) is enough: both are immutable.
    let checked = this.checkedBinaries.get(skill);
    if (!checked || checked.wasm !== wasm) {
      checked = { wasm, maxPages: checkBinary(skill, wasm, this.opts.caps).maxPages };
      this.checkedBinaries.set(skill, checked);
    }
    return { ...skill, wasm, maxPages: checked.maxPages };
  }

  private async binary(sha: string): Promise<Uint8Array> {
    const mem = this.binaries.get(sha);
    if (mem) {
      this.binaries.delete(sha);
      this.binaries.set(sha, mem);
      return mem;
    }
    const running = this.inflight.get(sha) as Promise<Uint8Array> | undefined;
    if (running) return running;
    const p = this.fetchBinary(sha).finally(() => this.inflight.delete(sha));
    this.inflight.set(sha, p);
    return p;
  }

  private async fetchBinary(sha: string): Promise<Uint8Array> {
    const file = this.opts.cacheDir && /^[0-9a-f]{64}$/.test(sha) ? join(this.opts.cacheDir, `${sha}.wasm`) : undefined;
    if (file && existsSync(file)) {
      const bytes = new Uint8Array(readFileSync(file));
      if (sha256Hex(bytes) === sha) {
        this.counters.diskHits += 1;
        this.remember(sha, bytes);
        return bytes;
      }
      this.opts.log.warn({ sha256: sha }, 'cached skill binary on disk does not match its hash; fetching it again');
    }
    this.counters.binaryFetches += 1;
    let bytes: Uint8Array | undefined;
    try {
      bytes = await readObject(this.jsm, OBJECT_BUCKETS.skillBinaries, sha, this.opts.caps.maxModuleBytes);
    } catch (err) {
      throw new SkillRunError(
        'integrity_error',
        `the skill binary ${sha.slice(0, 12)}... cannot be read intact: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!bytes)
      throw new SkillRunError(
        'not_found',
        `the binary ${sha.slice(0, 12)}... of an approved skill is missing from the object store; reinstall the skill`,
      );
    // Only bytes with the expected hash are kept; a mismatch is reported by checkBinary.
    if (sha256Hex(bytes) === sha) {
      this.remember(sha, bytes);
      if (file) {
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, bytes, { mode: 0o600 });
        renameSync(tmp, file);
      }
    }
    return bytes;
  }

  private remember(sha: string, bytes: Uint8Array): void {
    this.binaries.set(sha, bytes);
    this.binaryBytes += bytes.byteLength;
    while (this.binaryBytes > this.opts.memoryCacheBytes && this.binaries.size > 1) {
      const [oldest, b] = this.binaries.entries().next().value as [string, Uint8Array];
      this.binaries.delete(oldest);
      this.binaryBytes -= b.byteLength;
    }
  }

  /** Drops cached binaries (tests use it to force a fetch). */
  dropBinaryCache(): void {
    this.binaries.clear();
    this.binaryBytes = 0;
  }
}
