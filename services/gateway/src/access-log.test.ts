import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Unauthenticated } from '@talon/kit/errors';
import { logMethod, requestFields, routeTemplate, UNLOGGED_PATHS, UNMATCHED } from './access-log.ts';
import { AuthFailed, authFailureReason, MalformedToken, TokenStore } from './auth.ts';
import { Guard } from './guard.ts';

describe('request log route templates', () => {
  const cases: Array<[string, string]> = [
    ['/', '/'],
    ['/app.js', '/app.js'],
    ['/v1/chat/completions', '/v1/chat/completions'],
    ['/v1/models', '/v1/models'],
    ['/v1/models/gpt-4o', '/v1/models/{id}'],
    ['/v1/models/meta/llama-3', '/v1/models/{id}'],
    ['/v1/me/token/rotate', '/v1/me/token/rotate'],
    ['/v1/approvals', '/v1/approvals'],
    ['/v1/approvals/3f1c9a/approve', '/v1/approvals/{id}/approve'],
    ['/v1/approvals/3f1c9a/deny', '/v1/approvals/{id}/deny'],
    ['/v1/conversations', '/v1/conversations'],
    ['/v1/conversations/', '/v1/conversations'],
    ['/v1/conversations/alice-trip', '/v1/conversations/{id}'],
    ['/v1/conversations/alice-trip/messages', '/v1/conversations/{id}/messages'],
    ['/v1/memory', '/v1/memory'],
    ['/v1/admin/audit', '/v1/admin/audit'],
    ['/v1/admin/tokens/0b7c4a4e-1f1e-4c53-8a55-7e0a5f7c1d2e/revoke', '/v1/admin/tokens/{id}/revoke'],
    ['/v1/admin/pairings/ABCD-EFGH/approve', '/v1/admin/pairings/{code}/approve'],
    ['/v1/admin/pairings/unpair', '/v1/admin/pairings/unpair'],
    ['/hooks/telegram', '/hooks/telegram'],
    ['/hooks/evil%0aline', '/hooks/{unknown}'],
    ['/v1/nope/123', UNMATCHED],
    ['/wp-login.php', UNMATCHED],
    ['/v1/approvals/x/y/approve', UNMATCHED],
  ];
  for (const [path, template] of cases) it(`${path} → ${template}`, () => assert.equal(routeTemplate(path), template));

  it('never lets an id or free text through', () => {
    for (const path of ['/v1/conversations/secret-plans-of-bob', `/v1/admin/tokens/${'a'.repeat(36)}/revoke`, '/x?token=1']) {
      assert.doesNotMatch(routeTemplate(path), /bob|aaaa|token=/);
    }
  });

  it('does not log probes and bounds the method', () => {
    assert.ok(UNLOGGED_PATHS.has('/healthz'));
    assert.equal(logMethod('post'), 'POST');
    assert.equal(logMethod('BREW'), 'OTHER');
    assert.equal(logMethod(undefined), 'OTHER');
  });

  it('a line carries route, status, duration, client and principal ids only', () => {
    assert.deepEqual(
      requestFields({
        method: 'POST',
        route: '/v1/chat/completions',
        status: 200,
        durationMs: 12.345,
        client: '127.0.0.1',
        user: 'alice',
        tokenId: 't-1',
      }),
      {
        method: 'POST',
        route: '/v1/chat/completions',
        status: 200,
        duration_ms: 12.3,
        client: '127.0.0.1',
        user: 'alice',
        token_id: 't-1',
      },
    );
    assert.deepEqual(Object.keys(requestFields({ method: 'GET', route: '/', status: 401, durationMs: 1, client: '::1', aborted: true })), [
      'method',
      'route',
      'status',
      'duration_ms',
      'client',
      'aborted',
    ]);
  });
});

describe('failed logins', () => {
  it('names a bounded reason', () => {
    assert.equal(authFailureReason(new MalformedToken()), 'malformed_token');
    assert.equal(authFailureReason(new AuthFailed('revoked_token', 'x')), 'revoked_token');
    assert.equal(authFailureReason(new Unauthenticated('x')), 'unknown_token');
  });

  it('are logged once at warn with the client address and never the credential', async () => {
    const lines: Array<{ fields: Record<string, unknown>; msg: string }> = [];
    const guard = new Guard({
      // Missing and malformed tokens are refused before the store is asked; no NATS needed.
      tokens: new TokenStore(null as never),
      trustedProxies: [],
      allowedOrigins: new Set(),
      rateAddressPerMin: 100,
      rateTokenPerMin: 100,
      authFailuresPerMin: 100,
      rateWebhookPerMin: 100,
      log: { warn: ((fields: Record<string, unknown>, msg: string) => lines.push({ fields, msg })) as never },
    });
    const bad = 'Bearer not-a-talon-token-but-a-password';
    await assert.rejects(guard.authenticate('198.51.100.7', { header: bad }), MalformedToken);
    await assert.rejects(guard.authenticate('198.51.100.8', { header: undefined }), Unauthenticated);
    assert.deepEqual(lines, [
      { fields: { client: '198.51.100.7', reason: 'malformed_token' }, msg: 'authentication failed' },
      { fields: { client: '198.51.100.8', reason: 'missing_token' }, msg: 'authentication failed' },
    ]);
    assert.doesNotMatch(JSON.stringify(lines), /password/);
  });
});
