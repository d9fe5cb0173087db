import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Placement, type SecretPolicy } from '@talon/proto';
import {
  canonicalHost,
  canonicalPolicy,
  decide,
  hostPatternMatches,
  parseHostPattern,
  storedPolicy,
  validatePolicy,
  type ResolveContext,
  type StoredPolicy,
} from './policy.ts';

const NOW = Date.UTC(2030, 0, 1);

function pol(p: Partial<SecretPolicy>): StoredPolicy {
  return validatePolicy(
    { hosts: ['api.example.com'], placement: Placement.PLACEMENT_BEARER, field: '', principals: [], expiresAtMs: 0, ...p },
    NOW,
  );
}

/** Does the host rule `pattern` admit host:port (host canonicalised as Resolve does)? */
function admits(pattern: string, host: string, port = 443): boolean {
  const h = canonicalHost(host);
  return h !== undefined && hostPatternMatches(parseHostPattern(pattern), h, port);
}

describe('host rules', () => {
  it('exact names match only themselves, case-insensitively and without a trailing dot', () => {
    assert.ok(admits('api.example.com', 'api.example.com'));
    assert.ok(admits('api.example.com', 'API.Example.COM'));
    assert.ok(admits('API.example.com.', 'api.example.com.'));
    assert.ok(!admits('api.example.com', 'example.com'));
    assert.ok(!admits('api.example.com', 'api.example.com.evil.net'));
    assert.ok(!admits('api.example.com', 'xapi.example.com'));
  });

  it('*.suffix matches subdomains only: not the bare suffix, not lookalikes, not IPs', () => {
    assert.ok(admits('*.example.com', 'a.example.com'));
    assert.ok(admits('*.example.com', 'a.b.example.com'));
    assert.ok(admits('*.Example.com', 'A.EXAMPLE.COM.'));
    assert.ok(!admits('*.example.com', 'example.com'));
    assert.ok(!admits('*.example.com', 'evil-example.com'));
    assert.ok(!admits('*.example.com', 'evilexample.com'));
    assert.ok(!admits('*.example.com', 'example.com.evil.net'));
    assert.ok(!admits('*.example.com', 'a.example.co'));
    assert.ok(!admits('*.example.com', '.example.com'));
  });

  it('a rule without a port means 443 only; a port in the rule means exactly that port', () => {
    assert.ok(admits('api.example.com', 'api.example.com', 443));
    assert.ok(!admits('api.example.com', 'api.example.com', 80));
    assert.ok(!admits('api.example.com', 'api.example.com', 8443));
    assert.ok(admits('api.example.com:8443', 'api.example.com', 8443));
    assert.ok(!admits('api.example.com:8443', 'api.example.com', 443));
    assert.ok(admits('*.example.com:8443', 'x.example.com', 8443));
    assert.ok(!admits('*.example.com:8443', 'x.example.com', 443));
  });

  it('IP rules match the address in any spelling the URL parser accepts, and nothing else', () => {
    assert.ok(admits('203.0.113.7', '203.0.113.7'));
    assert.ok(admits('127.0.0.1:8080', '127.1', 8080));
    assert.ok(admits('127.0.0.1:8080', '0x7f.0.0.1', 8080));
    assert.ok(!admits('127.0.0.1:8080', '127.0.0.2', 8080));
    assert.ok(!admits('203.0.113.7', '203.0.113.70'));
    assert.ok(admits('[2001:db8::1]:8443', '2001:db8:0:0:0:0:0:1', 8443));
    assert.ok(admits('[2001:db8::1]:8443', '[2001:DB8::1]', 8443));
    assert.ok(admits('2001:db8::1', '2001:db8::1', 443));
    assert.ok(!admits('[2001:db8::1]', '2001:db8::2', 443));
  });

  it('rejects malformed rules with a message naming the entry', () => {
    for (const bad of [
      '',
      '*',
      '*.com',
      '*.203.0.113.7',
      'a.*.example.com',
      'api.example.com:0',
      'api.example.com:70000',
      'user@host',
      'a/b',
      'ex ample.com',
      'api.example.com:https',
    ]) {
      assert.throws(
        () => parseHostPattern(bad),
        (e: Error) => e.name === 'PolicyInvalid',
        bad,
      );
    }
  });

  it('canonicalHost refuses things that are not hosts', () => {
    for (const bad of ['', 'a b', 'a/b', 'a@b', 'h?x', 'h#x', '1.2.3.4.5', '999.1.1.1', '%41.com'])
      assert.equal(canonicalHost(bad), undefined, bad);
    assert.equal(canonicalHost('Bücher.de.'), 'xn--bcher-kva.de');
  });
});

describe('policy validation', () => {
  it('normalises and applies defaults: bearer, principal orchestrator', () => {
    const p = pol({ hosts: ['API.example.com.', 'api.example.com', '*.Example.org:8443'], placement: Placement.PLACEMENT_UNSPECIFIED });
    assert.deepEqual(p, {
      hosts: ['api.example.com', '*.example.org:8443'],
      placement: 'bearer',
      field: '',
      principals: ['orchestrator'],
      expiresAtMs: 0,
    });
  });

  it('needs a field for header and query placements, and refuses one elsewhere', () => {
    assert.equal(pol({ placement: Placement.PLACEMENT_HEADER, field: 'X-Api-Key' }).field, 'x-api-key');
    assert.equal(pol({ placement: Placement.PLACEMENT_QUERY, field: 'apiKey' }).field, 'apiKey');
    assert.throws(() => pol({ placement: Placement.PLACEMENT_HEADER }), /header/);
    assert.throws(() => pol({ placement: Placement.PLACEMENT_QUERY, field: 'a b' }), /query/);
    assert.throws(() => pol({ placement: Placement.PLACEMENT_BEARER, field: 'x' }), /only by header and query/);
  });

  it('accepts services, skill ids and MCP servers as principals, nothing else', () => {
    assert.deepEqual(pol({ principals: ['gateway', 'skill:weather@1.2.0'] }).principals, ['gateway', 'skill:weather@1.2.0']);
    assert.deepEqual(pol({ principals: ['mcp:docs'] }).principals, ['mcp:docs']);
    for (const bad of ['vault', 'egress', 'memory', 'skill:weather', 'skill:@1', 'Orchestrator', '*', 'mcp:', 'mcp:Docs', 'mcp:a.b']) {
      assert.throws(() => pol({ principals: [bad] }), /principal/, bad);
    }
  });

  it('refuses no hosts and an expiry in the past', () => {
    assert.throws(() => pol({ hosts: [] }), /at least one host/);
    assert.throws(() => pol({ expiresAtMs: NOW - 1 }), /past/);
  });

  it('canonical form is stable across a jsonb round trip (key order)', () => {
    const p = pol({ principals: ['orchestrator', 'gateway'], expiresAtMs: NOW + 1000 });
    const reordered = JSON.parse(
      JSON.stringify({ expiresAtMs: p.expiresAtMs, principals: p.principals, field: p.field, placement: p.placement, hosts: p.hosts }),
    );
    assert.equal(canonicalPolicy(storedPolicy(reordered)), canonicalPolicy(p));
    assert.throws(() => storedPolicy({ ...reordered, placement: 'toString' }), /malformed/);
  });
});

describe('decide', () => {
  const req = (r: Partial<ResolveContext> = {}): ResolveContext => ({
    principal: 'orchestrator',
    host: 'api.example.com',
    port: 443,
    placement: Placement.PLACEMENT_BEARER,
    field: '',
    ...r,
  });

  it('allows the bound host, principal and placement', () => {
    assert.deepEqual(decide('k', pol({}), req(), NOW), { allowed: true });
  });

  it('refuses with a stable reason', () => {
    const p = pol({ expiresAtMs: NOW + 10 });
    const reason = (r: ReturnType<typeof decide>) => (r.allowed ? 'allowed' : r.reason);
    assert.equal(reason(decide('k', p, req({ host: 'evil.example.net' }), NOW)), 'host_not_bound');
    assert.equal(reason(decide('k', p, req({ port: 80 }), NOW)), 'host_not_bound');
    assert.equal(reason(decide('k', p, req({ principal: 'skill:weather@1.0.0' }), NOW)), 'principal_not_allowed');
    assert.equal(reason(decide('k', p, req({ placement: Placement.PLACEMENT_QUERY, field: 'key' }), NOW)), 'placement_mismatch');
    assert.equal(reason(decide('k', p, req(), NOW + 10)), 'secret_expired');
  });

  it('compares header names case-insensitively and query names exactly', () => {
    const h = pol({ placement: Placement.PLACEMENT_HEADER, field: 'X-Api-Key' });
    assert.equal(decide('k', h, req({ placement: Placement.PLACEMENT_HEADER, field: 'x-api-key' }), NOW).allowed, true);
    assert.equal(decide('k', h, req({ placement: Placement.PLACEMENT_HEADER, field: 'x-other' }), NOW).allowed, false);
    const q = pol({ placement: Placement.PLACEMENT_QUERY, field: 'apiKey' });
    assert.equal(decide('k', q, req({ placement: Placement.PLACEMENT_QUERY, field: 'apiKey' }), NOW).allowed, true);
    assert.equal(decide('k', q, req({ placement: Placement.PLACEMENT_QUERY, field: 'apikey' }), NOW).allowed, false);
  });
});
