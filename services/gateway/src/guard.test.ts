import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CredentialInUrl, refuseCredentialsInUrl } from './guard.ts';

describe('credentials in URLs', () => {
  for (const url of [
    '/v1/chat/completions?token=abc',
    '/v1/ws?access_token=abc',
    '/v1/models?API_KEY=1',
    '/v1/me?authorization=Bearer%20x',
    `/v1/me/talon_pat_${'ab'.repeat(32)}`,
    `/?x=talon_pat_${'0'.repeat(64)}`,
    `/#talon_pat_${'0'.repeat(64)}`,
    `/v1/ws?t=talon%5Fpat%5F${'0'.repeat(64)}`,
  ]) {
    it(`refuses ${url.slice(0, 48)}`, () => assert.throws(() => refuseCredentialsInUrl(url), CredentialInUrl));
  }
  for (const url of ['/', '/v1/approvals?status=pending', '/v1/admin/audit?limit=5&before=9', '/app.js']) {
    it(`accepts ${url}`, () => refuseCredentialsInUrl(url));
  }
});
