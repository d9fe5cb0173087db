import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EgressDecision } from '@talon/proto';
import { decisionMatches, formatDecision, parseAuditFilter, parseTime } from './audit-filter.ts';

const NOW = Date.parse('2025-03-10T12:00:00Z');
const LIMITS = { def: 50, max: 1000 };

describe('audit filter flags', () => {
  it('reads durations back from now and ISO times', () => {
    assert.equal(parseTime('--since', '90s', NOW), NOW - 90_000);
    assert.equal(parseTime('--since', '15m', NOW), NOW - 900_000);
    assert.equal(parseTime('--since', '2h', NOW), NOW - 7_200_000);
    assert.equal(parseTime('--since', '7d', NOW), NOW - 7 * 86_400_000);
    assert.equal(parseTime('--since', '1w', NOW), NOW - 7 * 86_400_000);
    assert.equal(parseTime('--since', '2025-03-01', NOW), Date.parse('2025-03-01T00:00:00Z'));
    assert.equal(parseTime('--until', '2025-03-01T14:30:00Z', NOW), Date.parse('2025-03-01T14:30:00Z'));
    assert.equal(parseTime('--until', '2025-03-01 14:30:00+02:00', NOW), Date.parse('2025-03-01T12:30:00Z'));
  });

  it('refuses what it would have to guess at, saying what it takes', () => {
    for (const t of ['yesterday', '5 minutes', '1y', '2025-13-45', 'March 1', '-1h', '']) {
      assert.throws(() => parseTime('--since', t, NOW), /--since takes a duration back from now .* or an ISO time/, t);
    }
  });

  it('builds a filter and checks every flag', () => {
    assert.deepEqual(parseAuditFilter({}, NOW, LIMITS), {
      sinceMs: 0,
      untilMs: 0,
      principal: '',
      decision: '',
      secret: '',
      user: '',
      limit: 50,
    });
    assert.deepEqual(
      parseAuditFilter(
        { since: '1h', until: '10m', principal: 'skill:weather@1.0.0', decision: 'DENIED', secret: 'llm_api_key', limit: '20' },
        NOW,
        LIMITS,
      ),
      {
        sinceMs: NOW - 3_600_000,
        untilMs: NOW - 600_000,
        principal: 'skill:weather@1.0.0',
        decision: 'deny',
        secret: 'llm_api_key',
        user: '',
        limit: 20,
      },
    );
    assert.equal(parseAuditFilter({ user: 'alice.b' }, NOW, LIMITS).user, 'alice.b');
    for (const user of ['Alice', 'a b', '', 'alice,bob'])
      assert.throws(() => parseAuditFilter({ user }, NOW, LIMITS), /--user takes a Talon user id/, user);
    assert.equal(parseAuditFilter({ decision: 'allow' }, NOW, LIMITS).decision, 'allow');
    assert.throws(() => parseAuditFilter({ decision: 'maybe' }, NOW, LIMITS), /--decision takes allow or deny/);
    assert.throws(() => parseAuditFilter({ since: '1h', until: '2h' }, NOW, LIMITS), /--until must be later than --since/);
    assert.throws(() => parseAuditFilter({ secret: 'Not A Name' }, NOW, LIMITS), /--secret takes a secret name/);
    assert.throws(() => parseAuditFilter({ principal: 'a b' }, NOW, LIMITS), /--principal takes a principal/);
    for (const limit of ['0', '1001', '1.5', 'ten'])
      assert.throws(() => parseAuditFilter({ limit }, NOW, LIMITS), /--limit must be an integer from 1 to 1000/);
  });
});

describe('egress decisions against a filter', () => {
  const d = (over: Partial<EgressDecision>) =>
    EgressDecision.fromPartial({
      atMs: NOW - 60_000,
      principal: 'orchestrator',
      allowed: true,
      reason: 'allowed',
      method: 'POST',
      host: 'api.test',
      port: 443,
      path: '/v1',
      ...over,
    });
  const f = (flags: Parameters<typeof parseAuditFilter>[0]) => parseAuditFilter(flags, NOW, LIMITS);

  it('matches time, principal, decision and secret (injected or found)', () => {
    assert.ok(decisionMatches(f({}), d({})));
    assert.ok(decisionMatches(f({ since: '2m' }), d({})));
    assert.ok(!decisionMatches(f({ since: '30s' }), d({})));
    assert.ok(!decisionMatches(f({ until: '2m' }), d({})));
    assert.ok(decisionMatches(f({ principal: 'orchestrator' }), d({})));
    assert.ok(!decisionMatches(f({ principal: 'gateway' }), d({})));
    assert.ok(!decisionMatches(f({ decision: 'deny' }), d({})));
    assert.ok(decisionMatches(f({ decision: 'deny' }), d({ allowed: false, reason: 'secret_leak_blocked' })));
    assert.ok(decisionMatches(f({ secret: 'llm_api_key' }), d({ secrets: ['llm_api_key'] })));
    assert.ok(decisionMatches(f({ secret: 'llm_api_key' }), d({ allowed: false, findings: ['secret:llm_api_key'] })));
    assert.ok(!decisionMatches(f({ secret: 'llm_api_key' }), d({ secrets: ['other_key'], findings: ['github_pat'] })));
    assert.ok(decisionMatches(f({ user: 'alice' }), d({ user: 'alice' })));
    assert.ok(!decisionMatches(f({ user: 'alice' }), d({ user: 'bob' })));
    assert.ok(!decisionMatches(f({ user: 'alice' }), d({})), 'a decision made for nobody is not alice’s');
  });

  it('prints who, what, the decision and the rule behind a refusal', () => {
    const line = formatDecision(
      d({ allowed: false, reason: 'secret_leak_blocked', findings: ['github_pat', 'secret:llm_api_key'], id: 'r1' }),
    );
    assert.match(
      line,
      /DENY {3}principal=orchestrator {2}POST api\.test:443\/v1 {2}reason=secret_leak_blocked {2}rules=github_pat,secret:llm_api_key/,
    );
    assert.match(line, /id=r1$/);
    assert.doesNotMatch(line, /user=/, 'no user named, none printed');
    assert.match(formatDecision(d({ user: 'alice' })), /ALLOW {2}principal=orchestrator {2}user=alice {2}POST /);
  });
});
