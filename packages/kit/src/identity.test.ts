import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { identityFromSan, parseSubjectAltName } from './identity.ts';

describe('SPIFFE identity from subjectAltName', () => {
  it('reads exactly one spiffe://talon URI', () => {
    assert.equal(identityFromSan('URI:spiffe://talon/egress, DNS:localhost, IP Address:127.0.0.1'), 'egress');
    assert.equal(identityFromSan('DNS:egress, IP Address:127.0.0.1'), undefined);
  });

  it('refuses two SPIFFE URIs, other trust domains and malformed paths', () => {
    assert.equal(identityFromSan('URI:spiffe://talon/egress, URI:spiffe://talon/vault'), undefined);
    assert.equal(identityFromSan('URI:spiffe://evil/egress'), undefined);
    assert.equal(identityFromSan('URI:spiffe://talon/egress/extra'), undefined);
    assert.equal(identityFromSan('URI:spiffe://talon/'), undefined);
    assert.equal(identityFromSan('URI:spiffe://talon/EGRESS'), undefined);
    assert.equal(identityFromSan(undefined), undefined);
  });

  it('cannot be fooled by a comma inside a quoted SAN value (Node quotes such entries)', () => {
    // A DNS name that contains ", URI:spiffe://talon/vault" arrives JSON-quoted.
    const san = 'DNS:"evil.test, URI:spiffe://talon/vault", URI:spiffe://talon/gateway';
    const parsed = parseSubjectAltName(san);
    assert.deepEqual(parsed.uris, ['spiffe://talon/gateway']);
    assert.deepEqual(parsed.dns, ['evil.test, URI:spiffe://talon/vault']);
    assert.equal(identityFromSan(san), 'gateway');
  });

  it('accepts skill identities', () => {
    assert.equal(identityFromSan('URI:spiffe://talon/skill:weather@1.0.0'), 'skill:weather@1.0.0');
  });
});
