import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { SkillRecord, SkillStatus } from '@talon/proto';
import { grantOf, publisherKeyId } from './skill-grants.ts';

const rec = (over: Partial<SkillRecord>): SkillRecord => ({
  ...SkillRecord.fromPartial({}),
  name: 'weather',
  version: '1.0.0',
  sha256: 'ab'.repeat(32),
  approvedSha256: 'ab'.repeat(32),
  status: SkillStatus.SKILL_STATUS_APPROVED,
  approved: {
    hosts: [
      { host: 'API.Open-Meteo.com', port: 0, methods: [] },
      { host: '*.example.com', port: 8443, methods: ['get'] },
    ],
    secrets: ['weather_key'],
    memoryMb: 16,
    timeoutMs: 1000,
    requiresUserApproval: false,
  },
  ...over,
});

describe('skill grants', () => {
  it('turns an approved record into destination rules and secret names', () => {
    const g = grantOf('skill:weather@1.0.0', rec({}), true);
    assert.ok(!('refused' in g));
    assert.deepEqual(g.rules, [
      { principal: 'skill:weather@1.0.0', host: 'api.open-meteo.com' },
      { principal: 'skill:weather@1.0.0', host: '*.example.com', port: 8443, methods: ['GET'] },
    ]);
    assert.deepEqual([...g.secrets], ['weather_key']);
  });

  it('grants nothing unless approved, for the approved binary, by a trusted publisher', () => {
    assert.deepEqual(grantOf('p', undefined, true), { refused: 'skill_not_installed' });
    assert.deepEqual(grantOf('p', rec({ status: SkillStatus.SKILL_STATUS_PENDING }), true), { refused: 'skill_not_approved' });
    assert.deepEqual(grantOf('p', rec({ status: SkillStatus.SKILL_STATUS_REVOKED }), true), { refused: 'skill_not_approved' });
    assert.deepEqual(grantOf('p', rec({ sha256: 'cd'.repeat(32) }), true), { refused: 'skill_binary_changed' });
    assert.deepEqual(grantOf('p', rec({}), false), { refused: 'skill_publisher_untrusted' });
  });

  it('computes publisher key ids like the sandbox', () => {
    const raw = Buffer.alloc(32, 7);
    assert.equal(publisherKeyId(`ed25519:${raw.toString('base64url')}`), createHash('sha256').update(raw).digest('hex').slice(0, 16));
    assert.equal(publisherKeyId('rsa:xyz'), undefined);
  });
});
