// The SEV-SNP verifier against the recorded (synthetic) report and reports built
// here with one field wrong each: every failure must name its precise reason.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEBUG_POLICY, FIXTURE_MEASUREMENT, buildSnpReport, snpReportBody, type RecordedSnpFixture } from './fixtures/snp-fixture.ts';
import { SNP, SnpVerifier, TrustAnchorError, loadVcek, parseSnpReport } from './snp.ts';
import { reportDataFor, type Evidence, type Verdict } from './types.ts';

const fixtures = join(import.meta.dirname, 'fixtures');
const recorded = JSON.parse(readFileSync(join(fixtures, 'snp-report.json'), 'utf8')) as RecordedSnpFixture;
const vcekPem = readFileSync(join(fixtures, 'test-vcek.pem'));
const nonce = Buffer.from(recorded.nonce, 'hex');
const report = Buffer.from(recorded.report, 'base64');
const evidence = (r: Uint8Array): Evidence => ({ tee: 'sev-snp', report: r });
const verifier = (measurements = [recorded.measurement], vcek = loadVcek(vcekPem)) => new SnpVerifier({ vcek, measurements });
const code = (v: Verdict) => (v.ok ? 'ok' : v.code);

describe('SEV-SNP report verifier (recorded synthetic evidence)', () => {
  it('parses the fields at the offsets of the ABI specification', () => {
    const r = parseSnpReport(report)!;
    assert.equal(report.length, 0x4a0);
    assert.equal(r.version, 3);
    assert.equal(r.signatureAlgo, 1);
    assert.equal(r.measurement.toString('hex'), FIXTURE_MEASUREMENT);
    assert.deepEqual(r.reportData, reportDataFor(nonce));
    assert.equal((r.policy >> 19n) & 1n, 0n);
  });

  it('accepts the recorded report for its nonce and measurement, with claims', () => {
    const v = verifier().verify(evidence(report), { nonce });
    assert.ok(v.ok, JSON.stringify(v));
    assert.equal(v.claims.measurement, recorded.measurement);
    assert.equal(v.claims.tee, 'sev-snp');
  });

  it('refuses the same report for another nonce (replay)', () => {
    const v = verifier().verify(evidence(report), { nonce: Buffer.alloc(32, 7) });
    assert.equal(code(v), 'report_data_mismatch');
  });

  it('refuses a measurement that is not allowed', () => {
    const v = verifier(['ab'.repeat(48)]).verify(evidence(report), { nonce });
    assert.equal(code(v), 'measurement_not_allowed');
    assert.match(v.ok ? '' : v.reason, new RegExp(recorded.measurement));
  });

  it('refuses a flipped byte anywhere in the signed body or the signature', () => {
    for (const at of [0x50, 0x90 + 5, 0x1a0, 0x29f, SNP.signatureR, SNP.signatureS + 10]) {
      const bad = Buffer.from(report);
      bad[at]! ^= 0x01;
      assert.equal(code(verifier().verify(evidence(bad), { nonce })), 'signature_invalid', `byte 0x${at.toString(16)}`);
    }
  });

  it('refuses an out-of-range r (a non-zero byte above the 48 P-384 uses)', () => {
    const bad = Buffer.from(report);
    bad[SNP.signatureR + 60] = 1;
    assert.equal(code(verifier().verify(evidence(bad), { nonce })), 'signature_invalid');
  });

  it('refuses a truncated report and non-SNP evidence', () => {
    assert.equal(code(verifier().verify(evidence(report.subarray(0, 0x49f)), { nonce })), 'report_truncated');
    assert.equal(code(verifier().verify(evidence(new Uint8Array(0)), { nonce })), 'report_truncated');
    assert.equal(code(verifier().verify({ tee: 'tdx', report }, { nonce })), 'evidence_format');
  });

  it('refuses a report that verifies under another key', () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    assert.equal(code(verifier(undefined, other.publicKey).verify(evidence(report), { nonce })), 'signature_invalid');
    // ...and one signed by that other key, under the trusted VCEK.
    const forged = buildSnpReport({ reportData: reportDataFor(nonce) }, other.privateKey);
    assert.equal(code(verifier().verify(evidence(forged), { nonce })), 'signature_invalid');
  });

  describe('properly signed reports with one property wrong', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const v = new SnpVerifier({ vcek: publicKey, measurements: [FIXTURE_MEASUREMENT] });
    const rd = reportDataFor(nonce);

    it('a correct one passes', () => {
      assert.equal(code(v.verify(evidence(buildSnpReport({ reportData: rd }, privateKey)), { nonce })), 'ok');
    });
    it('a guest policy that allows debugging', () => {
      assert.equal(
        code(v.verify(evidence(buildSnpReport({ reportData: rd, policy: DEBUG_POLICY }, privateKey)), { nonce })),
        'debug_policy',
      );
    });
    it('an old report version and an unknown signature algorithm', () => {
      assert.equal(
        code(v.verify(evidence(buildSnpReport({ reportData: rd, version: 1 }, privateKey)), { nonce })),
        'report_version_unsupported',
      );
      assert.equal(
        code(v.verify(evidence(buildSnpReport({ reportData: rd, signatureAlgo: 2 }, privateKey)), { nonce })),
        'signature_algorithm_unsupported',
      );
    });
    it('an unsigned report', () => {
      assert.equal(code(v.verify(evidence(snpReportBody({ reportData: rd })), { nonce })), 'signature_invalid');
    });
  });
});

describe('VCEK trust anchor', () => {
  it('reads a PEM certificate, a DER certificate and a PEM public key', () => {
    const fromPem = loadVcek(vcekPem);
    const der = Buffer.from(
      vcekPem
        .toString()
        .replace(/-----[A-Z ]+-----/g, '')
        .replace(/\s/g, ''),
      'base64',
    );
    assert.ok(loadVcek(der).equals(fromPem));
    assert.ok(loadVcek(Buffer.from(fromPem.export({ type: 'spki', format: 'pem' }))).equals(fromPem));
  });

  it('refuses a key that is not P-384 and a file that is no key at all', () => {
    const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' });
    assert.throws(() => loadVcek(Buffer.from(p256)), TrustAnchorError);
    assert.throws(() => loadVcek(Buffer.from('not a certificate')), TrustAnchorError);
    assert.ok(createPublicKey(vcekPem).asymmetricKeyDetails?.namedCurve === 'secp384r1');
  });

  it('checks a chain that follows the VCEK (each signed by the next)', () => {
    const two = Buffer.concat([vcekPem, vcekPem]); // the test certificate is self-signed, so it "signs" itself
    assert.ok(loadVcek(two));
  });

  it('needs at least one well-formed measurement', () => {
    const vcek = loadVcek(vcekPem);
    assert.throws(() => new SnpVerifier({ vcek, measurements: [] }), /at least one/);
    assert.throws(() => new SnpVerifier({ vcek, measurements: ['abc'] }), /48-byte/);
  });
});
