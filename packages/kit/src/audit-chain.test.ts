import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  ChainSet,
  GENESIS_HASH,
  isChainHash,
  linkHash,
  vaultAuditContent,
  verifyChain,
  type ChainEntry,
  type VaultAuditContent,
} from './audit-chain.ts';

const row = (i: number, over: Partial<VaultAuditContent> = {}): VaultAuditContent => ({
  atMs: 1_700_000_000_000 + i,
  caller: 'spiffe://talon/egress',
  action: 'resolve',
  owner: 'default',
  secretName: `s${i}`,
  host: 'api.example.com:443',
  principal: 'orchestrator',
  allowed: true,
  reason: 'allowed',
  requestId: `req-${i}`,
  ...over,
});

/** A chain as the vault writes it: ids, stored prev and hash. */
function build(n: number, first = GENESIS_HASH): Array<ChainEntry & { row: VaultAuditContent }> {
  const out: Array<ChainEntry & { row: VaultAuditContent }> = [];
  let prev = first;
  for (let i = 1; i <= n; i++) {
    const r = row(i);
    const content = vaultAuditContent(r);
    const hash = linkHash(prev, content);
    out.push({ label: `#${i}`, atMs: r.atMs, prev, hash, content, row: r });
    prev = hash;
  }
  return out;
}

describe('audit chain', () => {
  it('hashes SHA-256 over the version tag, prev and the canonical content (computed independently here)', () => {
    const content = vaultAuditContent(row(1));
    assert.equal(
      content,
      '[1700000000001,"spiffe://talon/egress","resolve","default","s1","api.example.com:443","orchestrator",true,"allowed","req-1"]',
    );
    const expected = createHash('sha256').update(`talon-audit-chain-v1\n${GENESIS_HASH}\n${content}`).digest('hex');
    assert.equal(linkHash(GENESIS_HASH, content), expected);
    assert.ok(isChainHash(expected));
    assert.ok(!isChainHash(''));
    // Bytes and the same text as a string hash alike.
    assert.equal(linkHash(GENESIS_HASH, Buffer.from(content)), expected);
  });

  it('a built chain verifies from genesis and ends at the head the writer recorded', () => {
    const chain = build(5);
    const s = verifyChain(chain, { anchor: GENESIS_HASH, expectedHead: { hash: chain[4]!.hash!, label: '#5' } });
    assert.equal(s.break, undefined);
    assert.equal(s.records, 5);
    assert.equal(s.anchoredOn, 'genesis');
    assert.equal(s.head, chain[4]!.hash);
    assert.equal(s.first?.label, '#1');
  });

  it('an edited record is named, even when its stored hash was left alone', () => {
    const chain = build(5);
    const edited = chain.map((e, i) => (i === 2 ? { ...e, content: vaultAuditContent({ ...e.row, reason: 'x' }) } : e));
    const s = verifyChain(edited, { anchor: GENESIS_HASH });
    assert.equal(s.break?.kind, 'edited');
    assert.equal(s.break?.label, '#3');
    assert.equal(s.records, 2);
  });

  it('an edited record whose hash was recomputed breaks the link of the next one', () => {
    const chain = build(5);
    const content = vaultAuditContent({ ...chain[2]!.row, allowed: false });
    const forged = chain.map((e, i) => (i === 2 ? { ...e, content, hash: linkHash(e.prev, content) } : e));
    const s = verifyChain(forged, { anchor: GENESIS_HASH });
    assert.equal(s.break?.kind, 'link');
    assert.equal(s.break?.label, '#4');
    assert.match(s.break!.detail, /#3/);
  });

  it('a deleted middle record breaks the chain at the record after it', () => {
    const chain = build(5);
    const s = verifyChain([chain[0]!, chain[1]!, chain[3]!, chain[4]!], { anchor: GENESIS_HASH });
    assert.equal(s.break?.kind, 'link');
    assert.equal(s.break?.label, '#4');
  });

  it('an inserted record (well-formed, linked to its predecessor) breaks the link after it', () => {
    const chain = build(4);
    const content = vaultAuditContent(row(99));
    const inserted: ChainEntry = { label: '#99', prev: chain[1]!.hash!, hash: linkHash(chain[1]!.hash!, content), content };
    const s = verifyChain([chain[0]!, chain[1]!, inserted, chain[2]!, chain[3]!], { anchor: GENESIS_HASH });
    assert.equal(s.break?.kind, 'link');
    assert.equal(s.break?.label, '#3');
  });

  it('reordered records break the chain', () => {
    const chain = build(4);
    const s = verifyChain([chain[0]!, chain[2]!, chain[1]!, chain[3]!], { anchor: GENESIS_HASH });
    assert.equal(s.break?.kind, 'link');
    assert.equal(s.break?.label, '#3');
  });

  it('removing the newest records shows against the recorded head; removing the oldest against the anchor', () => {
    const chain = build(5);
    const tail = verifyChain(chain.slice(0, 4), { anchor: GENESIS_HASH, expectedHead: { hash: chain[4]!.hash!, label: '#5' } });
    assert.equal(tail.break?.kind, 'head');
    assert.equal(tail.break?.label, '#5');
    const none = verifyChain([], { anchor: GENESIS_HASH, expectedHead: { hash: chain[4]!.hash!, label: '#5' } });
    assert.equal(none.break?.kind, 'head');
    const head = verifyChain(chain.slice(1), { anchor: GENESIS_HASH });
    assert.equal(head.break?.kind, 'anchor');
    assert.equal(head.break?.label, '#2');
  });

  it('after retention, the oldest remaining record anchors on the hash of the newest removed one (or on its stored prev)', () => {
    const chain = build(6);
    const pruned = chain.slice(2);
    const anchored = verifyChain(pruned, { anchor: chain[1]!.hash! });
    assert.equal(anchored.break, undefined);
    assert.equal(anchored.anchoredOn, 'anchor');
    assert.equal(anchored.records, 4);
    const trusted = verifyChain(pruned);
    assert.equal(trusted.break, undefined);
    assert.equal(trusted.anchoredOn, 'stored_prev');
    // One more removed than retention recorded: caught by the anchor.
    assert.equal(verifyChain(chain.slice(3), { anchor: chain[1]!.hash! }).break?.kind, 'anchor');
  });

  it('per-writer chains: interleaved chains verify; a missing position is a gap, a repeat with other content an order break, a redelivery is skipped', () => {
    const mk = (n: number) => {
      const out: ChainEntry[] = [];
      let prev = GENESIS_HASH;
      for (let seq = 1; seq <= n; seq++) {
        const content = Buffer.from(`record ${seq} prev ${prev}`);
        out.push({ label: `seq ${seq}`, prev, seq, content });
        prev = linkHash(prev, content);
      }
      return out;
    };
    const a = mk(4);
    const b = mk(3);
    const ok = new ChainSet();
    for (const [id, e] of [
      ['a', a[0]],
      ['b', b[0]],
      ['a', a[1]],
      ['a', a[1]],
      ['b', b[1]],
      ['a', a[2]],
      ['b', b[2]],
      ['a', a[3]],
    ] as const)
      ok.add(id, e!);
    assert.equal(ok.broken, undefined);
    const sums = ok.finish();
    assert.equal(sums.get('a')?.records, 4);
    assert.equal(sums.get('a')?.duplicates, 1);
    assert.equal(sums.get('b')?.anchoredOn, 'genesis');

    const gap = new ChainSet();
    for (const e of [a[0], a[1], a[3]]) gap.add('a', e!);
    assert.equal(gap.broken?.kind, 'gap');
    assert.equal(gap.broken?.chain, 'a');
    assert.equal(gap.broken?.label, 'seq 4');
    assert.match(gap.broken!.detail, /positions 3\.\.3 are missing.*1 record removed/);

    const replay = new ChainSet();
    const fake: ChainEntry = { ...a[1]!, content: Buffer.from('forged') };
    for (const e of [a[0], a[1], fake]) replay.add('a', e!);
    assert.equal(replay.broken?.kind, 'order');

    // A chain whose first records went to retention is anchored on its oldest stored prev.
    const late = new ChainSet();
    for (const e of a.slice(2)) late.add('a', e);
    assert.equal(late.broken, undefined);
    assert.equal(late.finish().get('a')?.anchoredOn, 'stored_prev');

    // An edit of a seq-numbered record without a stored hash breaks the next link.
    const edited = new ChainSet();
    for (const e of [a[0], { ...a[1]!, content: Buffer.from('changed') }, a[2]]) edited.add('a', e!);
    assert.equal(edited.broken?.kind, 'link');
    assert.equal(edited.broken?.label, 'seq 3');
  });
});
