import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BUILTIN_RULES, InvalidLeakRule, assertBoundedPattern, expandLiterals, type LeakRule } from './rules.ts';
import { RULE_FIXTURES } from './rule-fixtures.ts';
import { LeakScanner, type ScanFinding, type ScanLocation } from './scanner.ts';

// Assertion messages name the rule and the case, never the fixture text: even
// generated values look like credentials to log scanners.
const scanner = new LeakScanner();

function fires(findings: ScanFinding[], id: string): boolean {
  return findings.some((f) => f.kind === 'rule' && f.id === id);
}

/** The ways a credential shows up in traffic; each positive must be found in all of them. */
const CONTEXTS: ReadonlyArray<[string, (v: string) => string, ScanLocation]> = [
  ['alone', (v) => v, 'body'],
  ['in prose', (v) => `please use ${v} for the deploy`, 'body'],
  ['in a JSON string', (v) => JSON.stringify({ config: { value: v, note: 'line one\nline two' } }), 'body'],
  ['in JSON inside a JSON string', (v) => JSON.stringify({ arguments: JSON.stringify({ value: v }) }), 'body'],
  ['percent-encoded in a URL query', (v) => `https://hooks.example.com/cb?x=1&v=${encodeURIComponent(v)}`, 'url'],
];

describe('built-in rule set', () => {
  it('has at least 40 rules, each with a unique snake_case id, a description and literals of 4+ characters', () => {
    assert.ok(BUILTIN_RULES.length >= 40, `only ${BUILTIN_RULES.length} rules`);
    const ids = new Set<string>();
    for (const r of BUILTIN_RULES) {
      assert.match(r.id, /^[a-z0-9_]+$/);
      assert.ok(!ids.has(r.id), `duplicate id ${r.id}`);
      ids.add(r.id);
      assert.ok(r.description.length > 10, r.id);
      assert.ok(r.literals && r.literals.length > 0, `${r.id} has no literal prefilter`);
      for (const lit of r.literals) assert.ok(lit.length >= 4, `${r.id}: literal shorter than 4`);
      assert.doesNotThrow(() => assertBoundedPattern(r.id, r.pattern.source));
      assert.ok(!r.pattern.flags.includes('g') && !r.pattern.flags.includes('y'), `${r.id}: the scanner sets g/y itself`);
    }
  });

  it('has fixtures (a true positive and a near miss at least) for exactly the rules that exist', () => {
    for (const r of BUILTIN_RULES) {
      const fx = RULE_FIXTURES[r.id];
      assert.ok(fx, `no fixture for ${r.id}`);
      assert.ok(fx.positives.length >= 1 && fx.nearMisses.length >= 1, r.id);
    }
    for (const id of Object.keys(RULE_FIXTURES))
      assert.ok(
        BUILTIN_RULES.some((r) => r.id === id),
        `fixture ${id} has no rule`,
      );
  });

  it('covers the credential families the egress issue lists', () => {
    const ids = new Set(BUILTIN_RULES.map((r) => r.id));
    for (const id of [
      'aws_access_key_id',
      'aws_secret_access_key',
      'github_pat',
      'github_fine_grained_pat',
      'gitlab_pat',
      'slack_bot_token',
      'slack_webhook_url',
      'stripe_live_secret_key',
      'stripe_webhook_secret',
      'openai_project_key',
      'openai_service_account_key',
      'anthropic_api_key',
      'anthropic_admin_key',
      'google_api_key',
      'google_oauth_client_secret',
      'gcp_service_account_key',
      'huggingface_token',
      'npm_token',
      'pypi_token',
      'private_key_pem',
      'jwt',
      'twilio_api_key',
      'sendgrid_api_key',
      'mailgun_api_key',
      'shopify_access_token',
      'square_access_token',
      'braintree_access_token',
      'azure_storage_account_key',
      'azure_ad_client_secret',
      'digitalocean_pat',
      'heroku_api_key',
      'datadog_api_key',
      'discord_bot_token',
      'telegram_bot_token',
      'atlassian_api_token',
      'linear_api_key',
      'notion_token',
      'postman_api_key',
      'doppler_token',
      'vault_service_token',
      'pulumi_access_token',
      'databricks_token',
      'sentry_org_token',
      'grafana_cloud_token',
      'newrelic_user_api_key',
      'age_secret_key',
      'talon_api_token',
    ])
      assert.ok(ids.has(id), `missing rule ${id}`);
  });
});

for (const rule of BUILTIN_RULES) {
  const fx = RULE_FIXTURES[rule.id];
  describe(`rule ${rule.id}`, () => {
    it('finds every true positive alone, in prose, in JSON, in nested JSON and percent-encoded in a URL', () => {
      for (const [i, positive] of (fx?.positives ?? []).entries())
        for (const [how, wrap, location] of CONTEXTS)
          assert.ok(fires(scanner.scanText(wrap(positive), location), rule.id), `${rule.id}: positive #${i} ${how} was not found`);
    });

    it('does not fire on near misses, and no other rule does either', () => {
      for (const [i, near] of (fx?.nearMisses ?? []).entries())
        for (const [how, wrap, location] of CONTEXTS.slice(0, 3)) {
          const found = scanner.scanText(wrap(near), location);
          assert.deepEqual(
            found.map((f) => f.id),
            [],
            `${rule.id}: near miss #${i} ${how} fired`,
          );
        }
    });
  });
}

describe('assertBoundedPattern', () => {
  it('rejects unbounded quantifiers outside character classes', () => {
    for (const src of ['ab+', 'a*b', '(?:ab){2,}', 'x[a-z]+', '(a|b)*'])
      assert.throws(() => assertBoundedPattern('t', src), InvalidLeakRule, src);
  });

  it('accepts bounded quantifiers, escaped and in-class + and *', () => {
    for (const src of ['a{2,5}', '[+*]{1,3}', '\\+\\*', 'a?b{3}', '(?:x|y){0,4}', '[\\]+]{2}'])
      assert.doesNotThrow(() => assertBoundedPattern('t', src), src);
  });
});

describe('custom rules', () => {
  it('are validated when the scanner is built', () => {
    const ok: LeakRule = { id: 'acme_key', description: 'ACME key', literals: ['acme_'], pattern: /acme_[a-z]{8}/ };
    assert.throws(() => new LeakScanner({ rules: [ok, ok] }), /used twice/);
    assert.throws(() => new LeakScanner({ rules: [{ ...ok, id: 'Bad-Id' }] }), InvalidLeakRule);
    assert.throws(() => new LeakScanner({ rules: [{ ...ok, literals: ['acm'] }] }), /at least 4/);
    assert.throws(() => new LeakScanner({ rules: [{ ...ok, pattern: /acme_[a-z]+/ }] }), /unbounded/);
  });

  it('run with a case-insensitive literal, or over the whole text without literals', () => {
    const s = new LeakScanner({
      rules: [
        { id: 'acme_key', description: 'ACME key after its name', literals: ['acme_key='], pattern: /acme_key=[0-9]{6}/i },
        { id: 'no_literal', description: 'digits in brackets', pattern: /\[[0-9]{5}\]/ },
      ],
    });
    assert.deepEqual(
      s.scanText('x ACME_KEY=123456 y', 'body').map((f) => f.id),
      ['acme_key'],
    );
    assert.deepEqual(
      s.scanText('see [12345] here', 'body').map((f) => f.id),
      ['no_literal'],
    );
    assert.deepEqual(s.scanText('ACME_KEY=12345 [1234]', 'body'), []);
  });
});

describe('expandLiterals', () => {
  it('builds every combination of its parts in order', () => {
    assert.deepEqual(expandLiterals('S', ['K', 'A'], '-', ['1', '2']), ['SK-1', 'SK-2', 'SA-1', 'SA-2']);
  });
});
