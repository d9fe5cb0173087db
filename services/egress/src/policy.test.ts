import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { builtinRules, decideDestination, hostMatches, parseHostPort, parsePolicyDocument, privateAllowed } from './policy.ts';

describe('destination policy', () => {
  const rules = [
    { principal: 'orchestrator', host: 'api.openai.com', port: 443, methods: ['POST'] },
    { principal: 'skill:w@1.0.0', host: '*.open-meteo.com' },
  ];
  const req = (o: Partial<{ principal: string; method: string; scheme: string; host: string; port: number }>) => ({
    principal: 'orchestrator',
    method: 'POST',
    scheme: 'https:',
    host: 'api.openai.com',
    port: 443,
    ...o,
  });

  it('allows exactly the granted principal, host, port and method', () => {
    assert.equal(decideDestination(rules, req({})).allowed, true);
    assert.equal(decideDestination(rules, req({ principal: 'sandbox' })).reason, 'host_not_allowed');
    assert.equal(decideDestination(rules, req({ host: 'api.openai.com.evil.test' })).reason, 'host_not_allowed');
    assert.equal(decideDestination(rules, req({ port: 8443 })).reason, 'port_not_allowed');
    assert.equal(decideDestination(rules, req({ method: 'DELETE' })).reason, 'method_not_allowed');
    assert.equal(decideDestination(rules, req({ scheme: 'ftp:' })).reason, 'scheme_not_allowed');
  });

  it('wildcards match subdomains only, and default methods and ports apply', () => {
    const s = { principal: 'skill:w@1.0.0', method: 'GET', scheme: 'https:', port: 443 };
    assert.equal(decideDestination(rules, { ...s, host: 'api.open-meteo.com' }).allowed, true);
    assert.equal(decideDestination(rules, { ...s, host: 'open-meteo.com' }).allowed, false);
    assert.equal(decideDestination(rules, { ...s, host: 'evilopen-meteo.com' }).allowed, false);
    assert.equal(decideDestination(rules, { ...s, host: 'api.open-meteo.com', method: 'PUT' }).allowed, false);
    assert.equal(decideDestination(rules, { ...s, host: 'api.open-meteo.com', scheme: 'http:', port: 80 }).allowed, true);
  });

  it('normalises case and trailing dots', () => {
    assert.ok(hostMatches('API.OpenAI.com', 'api.openai.com.'));
  });

  it('derives the orchestrator rules from every LLM provider base URL', () => {
    assert.deepEqual(builtinRules({ llmBaseUrls: ['http://127.0.0.1:11434/v1'] }), [
      { principal: 'orchestrator', host: '127.0.0.1', port: 11434, methods: ['GET', 'POST'] },
    ]);
    assert.equal(builtinRules({ llmBaseUrls: ['https://api.anthropic.com/v1'] })[0]!.port, 443);
    assert.deepEqual(
      builtinRules({ llmBaseUrls: ['https://api.anthropic.com/v1', 'https://api.openai.com:8443/v1'] }).map((r) => [
        r.principal,
        r.host,
        r.port,
      ]),
      [
        ['orchestrator', 'api.anthropic.com', 443],
        ['orchestrator', 'api.openai.com', 8443],
      ],
    );
    const ch = builtinRules({ channelUrls: ['https://api.telegram.org', 'http://127.0.0.1:9000/slack', undefined] });
    assert.deepEqual(
      ch.map((r) => [r.principal, r.host, r.port]),
      [
        ['gateway', 'api.telegram.org', 443],
        ['gateway', '127.0.0.1', 9000],
      ],
    );
  });

  it('allows PUT only to channels whose sends are PUTs (Matrix), for the gateway only', () => {
    const rules = builtinRules({ channelUrls: ['https://api.telegram.org'], channelPutUrls: ['https://matrix.example.org', undefined] });
    const put = (host: string, principal = 'gateway') =>
      decideDestination(rules, { principal, method: 'PUT', scheme: 'https:', host, port: 443 }).allowed;
    assert.ok(put('matrix.example.org'));
    assert.ok(
      decideDestination(rules, { principal: 'gateway', method: 'GET', scheme: 'https:', host: 'matrix.example.org', port: 443 }).allowed,
    );
    assert.ok(!put('api.telegram.org'));
    assert.ok(!put('matrix.example.org', 'orchestrator'));
  });

  it('parses TALON_EGRESS_ALLOW_PRIVATE entries', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 });
    assert.equal(parseHostPort('127.0.0.1'), undefined);
    assert.ok(privateAllowed([{ host: 'localhost', port: 1 }], 'LOCALHOST.', 1));
    assert.ok(!privateAllowed([{ host: 'localhost', port: 1 }], 'localhost', 2));
  });

  it('validates operator policy files with the offending index', () => {
    assert.throws(() => parsePolicyDocument({ rules: [{ principal: 'orchestrator', host: 'x.test', port: 0 }] }), /rules\[0\]\.port/);
    assert.throws(() => parsePolicyDocument({ rules: [{ principal: 'Bad Principal', host: 'x' }] }), /rules\[0\]\.principal/);
    assert.throws(() => parsePolicyDocument([]), /"rules" array/);
    assert.equal(parsePolicyDocument({ rules: [{ principal: 'sandbox', host: 'A.test', methods: ['GET'] }] })[0]!.host, 'a.test');
  });
});
