// The gate fails closed: whatever goes wrong (no evidence, a verifier that says no,
// throws, hangs or returns garbage) ends in AttestationFailed with a precise reason.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_MEASUREMENT, fakeSnpSource } from './fixtures/snp-fixture.ts';
import { AttestationFailed, AttestationGate } from './gate.ts';
import { SnpVerifier } from './snp.ts';
import { ConfigfsTsmSource, NoEvidence } from './tsm.ts';
import type { Evidence, EvidenceSource, Verifier } from './types.ts';

const failing: Verifier = { name: 'always-no', verify: () => ({ ok: false, code: 'verifier_refused', reason: 'policy says no' }) };
const throwing: Verifier = {
  name: 'throws',
  verify: () => {
    throw new TypeError('bug in the verifier');
  },
};
const hanging: Verifier = { name: 'hangs', verify: () => new Promise(() => undefined) };
const passing: Verifier = { name: 'always-yes', verify: () => ({ ok: true, claims: { tee: 'fake' } }) };

const rejectsWith = (p: Promise<unknown>, reason: string, message?: RegExp) =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AttestationFailed, `an AttestationFailed, got ${String(e)}`);
    assert.equal(e.reason, reason);
    if (message) assert.match(e.message, message);
    assert.match(e.message, /vault stays sealed/);
    return true;
  });

describe('attestation gate', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
  const snp = new SnpVerifier({ vcek: publicKey, measurements: [FIXTURE_MEASUREMENT] });

  it('passes fresh, correctly signed SNP evidence and returns the claims', async () => {
    const source = fakeSnpSource(privateKey);
    const gate = new AttestationGate({ source, verifier: snp, timeoutMs: 5000 });
    const claims = await gate.check();
    assert.equal(claims.measurement, FIXTURE_MEASUREMENT);
    await gate.check();
    assert.equal(source.calls, 2, 'evidence is collected for every check');
  });

  it('uses a new nonce every time: evidence recorded from one check fails the next', async () => {
    let recorded: Evidence | undefined;
    const source = fakeSnpSource(privateKey);
    const recording: EvidenceSource = {
      name: 'recording',
      collect: async (rd, s) => (recorded ??= await source.collect(rd, s)),
    };
    const gate = new AttestationGate({ source: recording, verifier: snp, timeoutMs: 5000 });
    await gate.check();
    await rejectsWith(gate.check(), 'report_data_mismatch');
  });

  it('fails closed with a fake verifier that always refuses', async () => {
    await rejectsWith(
      new AttestationGate({ source: new NoEvidence(), verifier: failing, timeoutMs: 5000 }).check(),
      'verifier_refused',
      /policy says no/,
    );
  });

  it('fails closed with a verifier that throws, without echoing its internals', async () => {
    const p = new AttestationGate({ source: new NoEvidence(), verifier: throwing, timeoutMs: 5000 }).check();
    await rejectsWith(p, 'verifier_error', /TypeError/);
  });

  it('fails closed with a verifier that never answers', async () => {
    await rejectsWith(
      new AttestationGate({ source: new NoEvidence(), verifier: hanging, timeoutMs: 150 }).check(),
      'verifier_timeout',
      /150 ms/,
    );
  });

  it('fails closed when the evidence source fails, even with a verifier that would pass', async () => {
    const broken: EvidenceSource = { name: 'broken', collect: () => Promise.reject(new Error('no /dev/sev-guest here')) };
    await rejectsWith(
      new AttestationGate({ source: broken, verifier: passing, timeoutMs: 5000 }).check(),
      'evidence_unavailable',
      /sev-guest/,
    );
  });

  it('maps refusals to permission_denied and outages to unavailable', () => {
    assert.equal(new AttestationFailed('measurement_not_allowed', 'x').code, 'permission_denied');
    assert.equal(new AttestationFailed('verifier_unavailable', 'x').code, 'unavailable');
  });
});

describe('configfs-tsm evidence source', () => {
  it('names the missing interface when there is no TEE', async () => {
    const src = new ConfigfsTsmSource('sev-snp', '/nonexistent/tsm/report');
    await assert.rejects(
      src.collect(Buffer.alloc(64), AbortSignal.timeout(5000)),
      /cannot create a report entry under \/nonexistent\/tsm\/report \(ENOENT\).*configfs-tsm/,
    );
  });

  it('refuses a directory that is not configfs (no provider attribute appears) and cleans up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'talon-tsm-'));
    try {
      const src = new ConfigfsTsmSource('tdx', dir);
      await assert.rejects(src.collect(Buffer.alloc(64), AbortSignal.timeout(5000)), /reading a report from .* failed \(ENOENT\)/);
      const gate = new AttestationGate({ source: src, verifier: passing, timeoutMs: 5000 });
      await rejectsWith(gate.check(), 'evidence_unavailable');
      assert.deepEqual(readdirSync(dir), [], 'the report entries were removed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses report_data of the wrong size', async () => {
    await assert.rejects(new ConfigfsTsmSource('sev-snp', '/x').collect(Buffer.alloc(32), AbortSignal.timeout(5000)), /64 bytes/);
  });
});
