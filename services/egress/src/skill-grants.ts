// What a skill may do through egress: exactly the hosts and secret names the
// operator approved for that skill version (KV bucket talon_skills, written by
// `talon skills approve`). A second fence behind the sandbox, which verifies
// signatures and binaries before it runs anything: egress honours a grant only
// while the record is approved for the binary it was approved for and its
// publisher is still trusted. Changes to the bucket drop cached grants at once.
import { createHash } from 'node:crypto';
import { type KV } from '@nats-io/kv';
import type { Subscription } from '@nats-io/transport-node';
import { KV_BUCKETS, publisherKey, skillRecordKey, type Logger, type NatsConnection, openDirectKv } from '@talon/kit';
import { SkillRecord, SkillStatus, type SkillPermissions } from '@talon/proto';
import { normalizeHost, type DestinationRule } from './policy.ts';

export interface SkillGrant {
  rules: DestinationRule[];
  secrets: ReadonlySet<string>;
}

const SKILL_PRINCIPAL = /^skill:([a-z0-9][a-z0-9._-]{0,63})@([0-9A-Za-z.+-]{1,32})$/;

/** Publisher key id as the sandbox computes it: first 16 hex digits of SHA-256 of the raw key. */
export function publisherKeyId(key: string): string | undefined {
  const m = /^ed25519:([A-Za-z0-9_-]{43})$/.exec(key.trim());
  if (!m) return undefined;
  return createHash('sha256').update(Buffer.from(m[1]!, 'base64url')).digest('hex').slice(0, 16);
}

/** The grant a record carries, or the reason it carries none. Pure. */
export function grantOf(principal: string, rec: SkillRecord | undefined, publisherTrusted: boolean): SkillGrant | { refused: string } {
  if (!rec) return { refused: 'skill_not_installed' };
  if (rec.status !== SkillStatus.SKILL_STATUS_APPROVED) return { refused: 'skill_not_approved' };
  if (!rec.approvedSha256 || rec.approvedSha256 !== rec.sha256) return { refused: 'skill_binary_changed' };
  if (!publisherTrusted) return { refused: 'skill_publisher_untrusted' };
  const approved: SkillPermissions | undefined = rec.approved;
  return {
    rules: (approved?.hosts ?? []).map((h) => ({
      principal,
      host: normalizeHost(h.host),
      ...(h.port ? { port: h.port } : {}),
      ...(h.methods.length > 0 ? { methods: h.methods.map((m) => m.toUpperCase()) } : {}),
    })),
    secrets: new Set(approved?.secrets ?? []),
  };
}

export class SkillGrants {
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private kv: KV | undefined;
  private sub: Subscription | undefined;
  private readonly cache = new Map<string, { at: number; grant: SkillGrant | { refused: string } }>();
  private readonly ttlMs: number;

  constructor(nc: NatsConnection, log: Logger, ttlMs = 30_000) {
    this.nc = nc;
    this.log = log;
    this.ttlMs = ttlMs;
  }

  async start(): Promise<void> {
    this.kv = await openDirectKv(this.nc, KV_BUCKETS.skills);
    // Any change (approve, revoke, re-install, untrust) invalidates everything cached.
    this.sub = this.nc.subscribe(`$KV.${KV_BUCKETS.skills}.>`, {
      callback: () => {
        if (this.cache.size > 0) this.cache.clear();
      },
    });
  }

  /** The grant for a `skill:name@version` principal. */
  async grantFor(principal: string): Promise<SkillGrant | { refused: string }> {
    const m = SKILL_PRINCIPAL.exec(principal);
    if (!m) return { refused: 'bad_skill_principal' };
    const hit = this.cache.get(principal);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.grant;
    if (!this.kv) return { refused: 'skill_registry_unavailable' };
    let grant: SkillGrant | { refused: string };
    try {
      const e = await this.kv.get(skillRecordKey(m[1]!, m[2]!));
      const rec = e && e.operation === 'PUT' && e.value.length > 0 ? SkillRecord.decode(e.value) : undefined;
      let trusted = false;
      const keyId = rec ? publisherKeyId(rec.publisherKey) : undefined;
      if (keyId) {
        const p = await this.kv.get(publisherKey(keyId));
        trusted = !!p && p.operation === 'PUT' && p.value.length > 0;
      }
      grant = grantOf(principal, rec, trusted);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'skill registry unavailable');
      return { refused: 'skill_registry_unavailable' };
    }
    this.cache.set(principal, { at: Date.now(), grant });
    return grant;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
