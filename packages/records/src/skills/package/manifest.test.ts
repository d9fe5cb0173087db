import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SkillPackageError } from './errors.ts';
import { canonicalJson, parseHostEntry, parseSkillId, requestedPermissions, validateManifest } from './manifest.ts';

export const BASE = {
  name: 'weather',
  version: '1.0.0',
  description: 'Current weather',
  inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  permissions: { hosts: ['api.open-meteo.com'], memoryMb: 4, timeoutMs: 5000 },
};

function refused(raw: unknown, reason: string, pattern: RegExp): void {
  assert.throws(
    () => validateManifest(raw),
    (e: unknown) => e instanceof SkillPackageError && e.reason === reason && pattern.test(e.message),
  );
}

describe('skill manifest', () => {
  it('accepts a complete manifest', () => {
    const m = validateManifest(structuredClone(BASE));
    assert.equal(m.name, 'weather');
  });

  it('refuses unknown fields anywhere, since the manifest is signed', () => {
    refused({ ...BASE, homepage: 'x' }, 'manifest_invalid', /unknown field "homepage"/);
    refused({ ...BASE, permissions: { ...BASE.permissions, network: 'all' } }, 'manifest_invalid', /unknown field "network"/);
  });

  it('checks names, versions and limits with actionable messages', () => {
    refused({ ...BASE, name: 'Weather' }, 'manifest_invalid', /name must be/);
    refused({ ...BASE, name: 'a.b' }, 'manifest_invalid', /name must be/);
    refused({ ...BASE, version: '1.0' }, 'manifest_invalid', /semantic version/);
    refused({ ...BASE, version: '1.0.0+build5' }, 'manifest_invalid', /semantic version/);
    refused({ ...BASE, version: `1.0.0-${'a'.repeat(30)}` }, 'manifest_invalid', /semantic version/);
    refused({ ...BASE, permissions: { ...BASE.permissions, memoryMb: 0 } }, 'manifest_invalid', /memoryMb/);
    refused({ ...BASE, permissions: { ...BASE.permissions, timeoutMs: 1e9 } }, 'manifest_invalid', /timeoutMs/);
    refused({ ...BASE, permissions: { memoryMb: 1, timeoutMs: 100, secrets: ['tok'] } }, 'manifest_invalid', /hosts is empty/);
    refused({ ...BASE, permissions: { ...BASE.permissions, secrets: ['bad name'] } }, 'manifest_invalid', /secret names/);
    refused({ ...BASE, description: '' }, 'manifest_invalid', /description/);
  });

  it('refuses input schemas with keywords it would not enforce', () => {
    refused({ ...BASE, inputSchema: { type: 'object', oneOf: [] } }, 'schema_unsupported', /"oneOf" is not supported/);
    refused({ ...BASE, inputSchema: { type: 'string' } }, 'schema_unsupported', /top-level schema must have "type": "object"/);
  });

  it('normalises host grants and refuses over-broad or malformed ones', () => {
    assert.deepEqual(parseHostEntry('API.Example.com:8443', 'h'), { host: 'api.example.com', port: 8443, methods: [] });
    assert.deepEqual(parseHostEntry({ host: '*.example.com', methods: ['POST', 'GET', 'GET'] }, 'h'), {
      host: '*.example.com',
      port: 0,
      methods: ['GET', 'POST'],
    });
    assert.deepEqual(parseHostEntry('[::1]:80', 'h'), { host: '::1', port: 80, methods: [] });
    for (const bad of ['*.com', '*', 'http://x.com', 'x.com:99999', 'exa mple.com', 'x.com/path']) {
      assert.throws(() => parseHostEntry(bad, 'h'), SkillPackageError, bad);
    }
    assert.throws(() => parseHostEntry({ host: 'x.com', methods: ['CONNECT'] }, 'h'), /methods/);
  });

  it('derives the requested permissions the operator approves', () => {
    const p = requestedPermissions(
      validateManifest({ ...BASE, permissions: { ...BASE.permissions, secrets: ['b', 'a', 'a'], requiresUserApproval: true } }),
    );
    assert.deepEqual(p, {
      hosts: [{ host: 'api.open-meteo.com', port: 0, methods: [] }],
      secrets: ['a', 'b'],
      memoryMb: 4,
      timeoutMs: 5000,
      requiresUserApproval: true,
    });
  });

  it('canonical JSON sorts keys at every level and drops whitespace', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 'é' }], c: null } }), '{"a":{"c":null,"d":[2,{"y":"é","z":1}]},"b":1}');
    assert.equal(canonicalJson(JSON.parse(' { "x" : [ 1 , 2 ] } ')), '{"x":[1,2]}');
    assert.throws(() => canonicalJson({ x: Number.NaN }), SkillPackageError);
  });

  it('parses name@version ids', () => {
    assert.deepEqual(parseSkillId('github-issues@1.2.3-rc.1'), { name: 'github-issues', version: '1.2.3-rc.1' });
    assert.deepEqual(parseSkillId('weather'), { name: 'weather', version: '' });
    assert.throws(() => parseSkillId('../etc@1'), SkillPackageError);
  });
});
