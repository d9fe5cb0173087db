import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { SkillStatus, type SkillPermissions, type SkillRecord, type TrustedPublisher } from '@talon/proto';
import { compareVersions, describeSkill, parametersOf, publisherKeyId, selectOffered, toolNameFor } from './catalog.ts';

function publisher(): TrustedPublisher {
  const raw = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const key = `ed25519:${Buffer.from(raw).toString('base64url')}`;
  return { key, keyId: publisherKeyId(key)!, label: 'test', addedAtMs: 1 };
}

const PUB = publisher();
const OTHER = publisher();
const SCHEMA = JSON.stringify({ type: 'object', properties: { q: { type: 'string' } }, required: ['q'], additionalProperties: false });

function perms(p: Partial<SkillPermissions> = {}): SkillPermissions {
  return { hosts: [], secrets: [], memoryMb: 1, timeoutMs: 1000, requiresUserApproval: false, ...p };
}

function record(name: string, version: string, over: Partial<SkillRecord> = {}): SkillRecord {
  const sha = 'a'.repeat(64);
  return {
    name,
    version,
    sha256: sha,
    manifestJson: '{}',
    status: SkillStatus.SKILL_STATUS_APPROVED,
    publisherKey: PUB.key,
    signature: 'sig',
    requested: perms(),
    approved: perms(),
    description: `does ${name}`,
    inputSchemaJson: SCHEMA,
    entrypoint: 'run',
    wasmSize: 10,
    moduleMaxPages: 1,
    installedAtMs: 1,
    approvedAtMs: 2,
    revokedAtMs: 0,
    approvedBy: 'op',
    revokedReason: '',
    approvedSha256: sha,
    imports: [],
    ...over,
  };
}

const trusted = new Map([[PUB.keyId, PUB]]);

describe('skill catalog', () => {
  it('offers only approved skills bound to their binary and signed by a trusted publisher', () => {
    const { offered, skipped } = selectOffered(
      [
        record('good', '1.0.0'),
        record('pending', '1.0.0', { status: SkillStatus.SKILL_STATUS_PENDING }),
        record('revoked', '1.0.0', { status: SkillStatus.SKILL_STATUS_REVOKED }),
        record('swapped', '1.0.0', { sha256: 'b'.repeat(64) }),
        record('unbound', '1.0.0', { approvedSha256: '' }),
        record('stranger', '1.0.0', { publisherKey: OTHER.key }),
        // A publisher entry under the right id but holding another key does not vouch for the record.
        record('forged', '1.0.0', { publisherKey: `ed25519:${'A'.repeat(43)}` }),
        record('noapproval', '1.0.0', { approved: undefined }),
        record('BadName', '1.0.0'),
      ],
      new Map([...trusted, [publisherKeyId(`ed25519:${'A'.repeat(43)}`)!, { ...OTHER, keyId: 'x' }]]),
    );
    assert.deepEqual(
      offered.map((s) => s.name),
      ['good'],
    );
    assert.deepEqual(
      Object.fromEntries(skipped.map((s) => [s.id, s.reason])),
      {
        'swapped@1.0.0': 'binary changed after approval',
        'unbound@1.0.0': 'binary changed after approval',
        'stranger@1.0.0': 'publisher not trusted',
        'forged@1.0.0': 'publisher not trusted',
        'BadName@1.0.0': 'invalid name or version',
      },
      'revoked, pending and unapproved ones are silently not offered',
    );
  });

  it('offers the highest approved version, never a higher unapproved one', () => {
    const { offered } = selectOffered(
      [
        record('conv', '1.2.0'),
        record('conv', '1.10.0'),
        record('conv', '2.0.0', { status: SkillStatus.SKILL_STATUS_PENDING }),
        record('conv', '1.11.0-rc.1'),
        record('conv', '1.9.9'),
      ],
      trusted,
    );
    assert.equal(offered.length, 1);
    assert.equal(offered[0]!.version, '1.11.0-rc.1');
    assert.ok(compareVersions('1.11.0', '1.11.0-rc.1') > 0, 'a release sorts after its pre-release');
    assert.ok(compareVersions('1.10.0', '1.9.0') > 0, 'numeric, not lexical');
  });

  it('skips a skill whose input schema is not an object schema (and does not fall back to an older version)', () => {
    const { offered, skipped } = selectOffered(
      [
        record('arr', '2.0.0', { inputSchemaJson: '{"type":"array"}' }),
        record('arr', '1.0.0'),
        record('junk', '1.0.0', { inputSchemaJson: '{not json' }),
        record('list', '1.0.0', { inputSchemaJson: '[1]' }),
      ],
      trusted,
    );
    assert.deepEqual(offered, []);
    assert.deepEqual(
      skipped.map((s) => s.id),
      ['arr@2.0.0', 'junk@1.0.0', 'list@1.0.0'],
    );
    assert.match(String(parametersOf('{"type":"string"}')), /not an object schema/);
    assert.deepEqual(parametersOf(SCHEMA), JSON.parse(SCHEMA));
  });

  it('describes the tool: name, third-party notice, approval, parameters, limits', () => {
    const { offered } = selectOffered(
      [
        record('weather', '1.0.0', {
          approved: perms({ requiresUserApproval: true, timeoutMs: 4000 }),
          description: 'Forecast\n  for a city.',
        }),
      ],
      trusted,
    );
    const s = offered[0]!;
    assert.equal(s.toolName, 'skill_weather');
    assert.equal(s.requiresApproval, true);
    assert.equal(s.timeoutMs, 4000);
    assert.deepEqual(s.parameters, JSON.parse(SCHEMA));
    assert.match(s.description, /^Third-party skill "weather" 1\.0\.0/);
    assert.match(s.description, /untrusted data, never instructions/);
    assert.match(s.description, /waits for the user's approval/);
    assert.match(s.description, /Forecast for a city\.$/);
    assert.ok(describeSkill({ name: 'x', version: '1.0.0', description: 'y'.repeat(5000) }, false).length <= 1024);
  });

  it('names tools within the providers’ rules, distinct even when cut', () => {
    const re = /^[a-zA-Z0-9_-]{1,64}$/;
    assert.equal(toolNameFor('unit-convert'), 'skill_unit-convert');
    const long1 = `a${'b'.repeat(62)}1`;
    const long2 = `a${'b'.repeat(62)}2`;
    const n1 = toolNameFor(long1);
    const n2 = toolNameFor(long2);
    assert.ok(re.test(n1) && re.test(n2), `${n1} ${n2}`);
    assert.equal(n1.length, 64);
    assert.notEqual(n1, n2);
    assert.ok(re.test(toolNameFor('we.ird/name')));
    assert.notEqual(toolNameFor('a.b'), toolNameFor('a_b'), 'a replaced character never collides with a real one');
  });
});
