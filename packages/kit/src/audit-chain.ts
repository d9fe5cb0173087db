// Tamper evidence for the audit trails (vault.audit_log, egress decisions on
// TALON_AUDIT): every record carries the hash of the one before it, so an edited,
// removed, inserted or reordered record breaks the chain at that point. The one
// place that defines the hash and the canonical form; the writers (vault, egress)
// and the verifier (`talon audit verify`) import them from here.
//
// hash = SHA-256( "talon-audit-chain-v1\n" + prev + "\n" + content ), lower-case hex,
// where prev is the previous record's hash (GENESIS_HASH for a chain's first record)
// and content is the record's canonical bytes: for the vault the JSON array of
// vaultAuditContent (fixed field order), for egress the EgressDecision protobuf bytes
// exactly as published (they include the link: chain, seq and prev).
//
// No key is involved: this detects changes made to the stored records by someone
// without the writer's rights, not forgery by a party able to write new records.
// Removing the newest records is visible only against a stored head (the vault
// keeps one); removing the oldest is indistinguishable from retention unless the
// writer recorded an anchor (the vault's pruning does).
import { createHash } from 'node:crypto';
import { EgressDecision, type AuditChainHead, type AuditChainRecord } from '@talon/proto';

export const CHAIN_VERSION = 'talon-audit-chain-v1';
/** The `prev` of a chain's first record. */
export const GENESIS_HASH = '0'.repeat(64);
const HASH = /^[0-9a-f]{64}$/;

export function isChainHash(s: string): boolean {
  return HASH.test(s);
}

/** The hash of a record whose canonical bytes are `content`, linked to `prev`. */
export function linkHash(prev: string, content: string | Uint8Array): string {
  return createHash('sha256').update(`${CHAIN_VERSION}\n${prev}\n`).update(content).digest('hex');
}

/** The fields of a vault audit row that are hashed, as stored (already clipped). */
export interface VaultAuditContent {
  atMs: number;
  caller: string;
  action: string;
  owner: string;
  secretName: string;
  host: string;
  principal: string;
  allowed: boolean;
  reason: string;
  requestId: string;
}

/** Canonical form of a vault audit row: a JSON array in this fixed order. */
export function vaultAuditContent(r: VaultAuditContent): string {
  return JSON.stringify([r.atMs, r.caller, r.action, r.owner, r.secretName, r.host, r.principal, r.allowed, r.reason, r.requestId]);
}

/** One stored record as the verifier sees it. */
export interface ChainEntry {
  /** How messages name the record, e.g. "#42" or "stream seq 17". */
  label: string;
  atMs?: number;
  /** The previous record's hash, as stored in this record. */
  prev: string;
  /** The record's own hash where it is stored (the vault keeps it); recomputed and compared. */
  hash?: string;
  /** Position in a per-writer chain (egress), 1 for the first record; must increase by one. */
  seq?: number;
  content: string | Uint8Array;
}

export type BreakKind = 'edited' | 'link' | 'gap' | 'order' | 'anchor' | 'head';

export interface ChainBreak {
  kind: BreakKind;
  label: string;
  atMs?: number;
  /** What is wrong, for a person. */
  detail: string;
}

export interface ChainSummary {
  records: number;
  /** Hash of the newest record (or of the anchor when there is none). */
  head: string;
  /** Where the oldest record's `prev` was checked against: genesis, a stored anchor, or not at all (trusted). */
  anchoredOn: 'genesis' | 'anchor' | 'stored_prev';
  first?: { label: string; atMs?: number; seq?: number };
  /** Records delivered twice (same position and content), skipped. */
  duplicates: number;
  break?: ChainBreak;
}

/**
 * Checks one chain record by record, oldest first; stops at the first break.
 * `anchor` is what the oldest record's `prev` must be: GENESIS_HASH when nothing
 * was ever removed, the hash of the newest removed record when the writer kept it,
 * or undefined to trust the oldest record's stored `prev` (older records gone to
 * retention; a seq-numbered record with seq 1 is still held to GENESIS_HASH).
 */
export class ChainVerifier {
  private anchor: string | undefined;
  private prevHash: string | undefined;
  private prevLabel = '';
  private prevSeq: number | undefined;
  private summary: ChainSummary;

  constructor(opts: { anchor?: string } = {}) {
    this.anchor = opts.anchor;
    this.summary = {
      records: 0,
      head: opts.anchor ?? '',
      anchoredOn: opts.anchor === undefined ? 'stored_prev' : opts.anchor === GENESIS_HASH ? 'genesis' : 'anchor',
      duplicates: 0,
    };
  }

  get broken(): ChainBreak | undefined {
    return this.summary.break;
  }

  /** Adds the next record; returns the break if this record is where the chain breaks. */
  add(e: ChainEntry): ChainBreak | undefined {
    if (this.summary.break) return this.summary.break;
    const hash = linkHash(e.prev, e.content);
    const fail = (kind: BreakKind, detail: string): ChainBreak => {
      const b: ChainBreak = { kind, label: e.label, detail, ...(e.atMs === undefined ? {} : { atMs: e.atMs }) };
      this.summary.break = b;
      return b;
    };
    if (e.hash !== undefined && e.hash !== hash) {
      return fail('edited', 'its content does not match its stored hash (the record was changed after it was written)');
    }
    if (this.prevHash === undefined) {
      // The oldest record: check it against the anchor.
      if (this.anchor === undefined && e.seq === 1) {
        this.anchor = GENESIS_HASH;
        this.summary.anchoredOn = 'genesis';
      }
      if (this.anchor !== undefined && e.prev !== this.anchor) {
        return fail(
          'anchor',
          this.anchor === GENESIS_HASH
            ? 'it is the oldest record but does not start the chain (records before it were removed)'
            : 'its previous-record hash does not match the newest record removed by retention (records before it were removed or changed)',
        );
      }
      this.summary.first = {
        label: e.label,
        ...(e.atMs === undefined ? {} : { atMs: e.atMs }),
        ...(e.seq === undefined ? {} : { seq: e.seq }),
      };
    } else {
      if (e.seq !== undefined && this.prevSeq !== undefined) {
        if (e.seq === this.prevSeq && hash === this.prevHash) {
          this.summary.duplicates += 1;
          return undefined;
        }
        if (e.seq <= this.prevSeq) {
          return fail(
            'order',
            `its position ${e.seq} repeats or precedes ${this.prevLabel} (position ${this.prevSeq}): a record was inserted, replayed or reordered`,
          );
        }
        if (e.seq > this.prevSeq + 1) {
          const n = e.seq - this.prevSeq - 1;
          return fail(
            'gap',
            `positions ${this.prevSeq + 1}..${e.seq - 1} are missing after ${this.prevLabel}: ${n} record${n === 1 ? '' : 's'} removed`,
          );
        }
      }
      if (e.prev !== this.prevHash) {
        return fail(
          'link',
          `its previous-record hash does not match ${this.prevLabel} (a record between them was removed, inserted or changed, or they were reordered)`,
        );
      }
    }
    this.prevHash = hash;
    this.prevLabel = e.label;
    this.prevSeq = e.seq;
    this.summary.records += 1;
    this.summary.head = hash;
    return undefined;
  }

  /**
   * Ends the check. `expectedHead` is the newest hash the writer recorded (the
   * vault's chain head), if any: a mismatch means the newest records were removed.
   */
  finish(expectedHead?: { hash: string; label: string }): ChainSummary {
    if (!this.summary.break && expectedHead !== undefined) {
      const have = this.prevHash ?? this.anchor;
      if (have !== expectedHead.hash) {
        this.summary.break = {
          kind: 'head',
          label: expectedHead.label,
          detail:
            this.prevHash === undefined
              ? 'the writer recorded it as the newest record, but no record remains (records were removed)'
              : `the writer recorded it as the newest record, but the chain ends at ${this.prevLabel} (newer records were removed or changed)`,
        };
      }
    }
    return { ...this.summary };
  }
}

/** Checks records of several independent chains (one per writer), interleaved in stored order. */
export class ChainSet {
  private readonly chains = new Map<string, ChainVerifier>();
  private firstBreak: (ChainBreak & { chain: string }) | undefined;

  add(chain: string, e: ChainEntry): (ChainBreak & { chain: string }) | undefined {
    if (this.firstBreak) return this.firstBreak;
    let v = this.chains.get(chain);
    if (!v) {
      v = new ChainVerifier();
      this.chains.set(chain, v);
    }
    const b = v.add(e);
    if (b) this.firstBreak = { ...b, chain };
    return this.firstBreak;
  }

  get broken(): (ChainBreak & { chain: string }) | undefined {
    return this.firstBreak;
  }

  /** Per-chain summaries, by chain id. */
  finish(): Map<string, ChainSummary> {
    return new Map([...this.chains].map(([id, v]) => [id, v.finish()]));
  }
}

/** Verifies a whole chain held in memory (tests, small trails). */
export function verifyChain(
  entries: Iterable<ChainEntry>,
  opts: { anchor?: string; expectedHead?: { hash: string; label: string } } = {},
): ChainSummary {
  const v = new ChainVerifier(opts.anchor === undefined ? {} : { anchor: opts.anchor });
  for (const e of entries) if (v.add(e)) break;
  return v.finish(opts.expectedHead);
}

// ---- the two trails ---------------------------------------------------------

export interface VaultChainPage {
  head: AuditChainHead | undefined;
  records: AuditChainRecord[];
}

export interface TrailReport {
  /** Records checked (chained ones). */
  records: number;
  /** Records written before chaining existed (oldest first, not checked). */
  unchained: number;
  /** Per chain: how its oldest record was anchored, and the newest hash. */
  chains: Map<string, ChainSummary>;
  break?: ChainBreak & { chain?: string };
}

/**
 * Verifies vault.audit_log page by page (`fetchPage(afterId)`, oldest first, as
 * AuditChain answers): rows up to the head read with the first page, the oldest
 * chained row anchored on the genesis or on the hash retention recorded, the last
 * one against the head.
 */
export async function verifyVaultTrail(fetchPage: (afterId: number) => Promise<VaultChainPage>): Promise<TrailReport> {
  const first = await fetchPage(0);
  const head = first.head ?? { lastId: 0, hash: '', anchorId: 0, anchorHash: '' };
  const anchor = head.anchorId === 0 ? GENESIS_HASH : head.anchorHash || undefined;
  const v = new ChainVerifier(anchor === undefined ? {} : { anchor });
  let unchained = 0;
  let started = false;
  let page = first;
  let afterId = 0;
  let done = false;
  while (!done) {
    for (const r of page.records) {
      // Rows written after the first page belong to a newer head: not this check's.
      if (r.id > head.lastId) {
        done = true;
        break;
      }
      afterId = r.id;
      if (!started && r.hash === '' && r.prevHash === '') {
        unchained += 1;
        continue;
      }
      started = true;
      const b = v.add({ label: `#${r.id}`, atMs: r.atMs, prev: r.prevHash, hash: r.hash, content: vaultAuditContent(r) });
      if (b) {
        const s = v.finish();
        return { records: s.records, unchained, chains: new Map([['vault', s]]), break: b };
      }
    }
    if (done || page.records.length === 0 || afterId >= head.lastId) break;
    page = await fetchPage(afterId);
  }
  const s = v.finish({ hash: head.hash || GENESIS_HASH, label: `#${head.lastId}` });
  return { records: s.records, unchained, chains: new Map([['vault', s]]), ...(s.break ? { break: s.break } : {}) };
}

/**
 * Verifies egress decisions as stored on TALON_AUDIT, in stream order: one chain
 * per egress process (EgressDecision.link), each without gaps; the hash of a
 * decision is over its message bytes as stored.
 */
export class EgressTrailVerifier {
  private readonly set = new ChainSet();
  private unchained = 0;
  private started = false;
  private noLink: ChainBreak | undefined;

  /** Adds the next stored message; returns the first break once there is one. */
  add(streamSeq: number, data: Uint8Array): (ChainBreak & { chain?: string }) | undefined {
    if (this.noLink) return this.noLink;
    const d = EgressDecision.decode(data);
    const label = `stream seq ${streamSeq}`;
    if (!d.link) {
      if (!this.started) {
        this.unchained += 1;
        return undefined;
      }
      this.noLink = { kind: 'edited', label, atMs: d.atMs, detail: 'it carries no chain link (not written by a chaining egress)' };
      return this.noLink;
    }
    this.started = true;
    return this.set.add(d.link.chain, { label, atMs: d.atMs, prev: d.link.prev, seq: d.link.seq, content: data });
  }

  finish(): TrailReport {
    const chains = this.set.finish();
    const records = [...chains.values()].reduce((n, s) => n + s.records, 0);
    const b = this.noLink ?? this.set.broken;
    return { records, unchained: this.unchained, chains, ...(b ? { break: b } : {}) };
  }
}
