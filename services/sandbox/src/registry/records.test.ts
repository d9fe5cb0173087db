import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import wabtInit from 'wabt';
import { SkillStatus, type SkillRecord, type TrustedPublisher } from '@talon/proto';
import { SkillRunError } from '../errors.ts';
import {
  canonicalJson,
  requestedPermissions,
  validateManifest,
  generatePublisherKey,
  publisherKeyId,
  sha256Hex,
  signSkill,
} from '@talon/records/skills';
import { approvalWithinRequest, checkApproved, checkBinary } from './records.ts';

const caps = { memoryCapMb: 64, maxModuleBytes: 1 << 20, maxTimeoutMs: 30_000 };
const pub = generatePublisherKey();
const publisher: TrustedPublisher = { key: pub.publicKey, keyId: publisherKeyId(pub.publicKey), label: '', addedAtMs: 1 };
const manifest = validateManifest({
  name: 'web',
  version: '2.0.0',
  description: 'd',
  inputSchema: { type: 'object' },
  permissions: { hosts: ['api.example.com'], secrets: ['tok'], memoryMb: 4, timeoutMs: 60_000 },
});
let wasm: Uint8Array;
let record: SkillRecord;

before(async () => {
  const wabt = await wabtInit();
  const m = wabt.parseWat('w.wat', '(module (memory (export "memory") 1 16) (func (export "run") (result i32) (i32.const 0)))');
  wasm = m.toBinary({}).buffer;
  m.destroy();
  const canonical = canonicalJson(manifest);
  const sha = sha256Hex(wasm);
  const requested = requestedPermissions(manifest);
  record = {
    name: 'web',
    version: '2.0.0',
    sha256: sha,
    manifestJson: canonical,
    status: SkillStatus.SKILL_STATUS_APPROVED,
    publisherKey: pub.publicKey,
    signature: signSkill(pub.privateKeyPem, sha, canonical).signature,
    requested,
    approved: requested,
    description: 'd',
    inputSchemaJson: '{"type":"object"}',
    entrypoint: 'run',
    wasmSize: wasm.length,
    moduleMaxPages: 16,
    installedAtMs: 1,
    approvedAtMs: 2,
    revokedAtMs: 0,
    approvedBy: 't',
    revokedReason: '',
    approvedSha256: sha,
    imports: [],
  };
});

function refused(r: SkillRecord, code: string, re: RegExp, p: TrustedPublisher | null = publisher): void {
  assert.throws(
    () => checkApproved(r, p ?? undefined, caps),
    (e: unknown) => e instanceof SkillRunError && e.code === code && re.test(e.message),
  );
}

describe('run-time checks of a skill record', () => {
  it('accepts an approved, signed record and caps the timeout at the node maximum', () => {
    const s = checkApproved(record, publisher, caps);
    assert.equal(s.id, 'web@2.0.0');
    assert.equal(s.timeoutMs, 30_000);
    assert.equal(s.memoryMb, 4);
  });

  it('runs nothing pending, revoked or approved for another binary', () => {
    refused({ ...record, status: SkillStatus.SKILL_STATUS_PENDING }, 'not_approved', /talon skills approve web@2.0.0/);
    refused({ ...record, status: SkillStatus.SKILL_STATUS_REVOKED, revokedReason: 'leaky' }, 'not_approved', /revoked \(leaky\)/);
    refused({ ...record, approvedSha256: '0'.repeat(64) }, 'not_approved', /changed after approval/);
  });

  it('requires a still-trusted publisher and a signature over the stored manifest and hash', () => {
    refused(record, 'integrity_error', /no longer trusted/, null);
    refused(record, 'integrity_error', /no longer trusted/, { ...publisher, key: generatePublisherKey().publicKey });
    refused({ ...record, manifestJson: record.manifestJson.replace('"memoryMb":4', '"memoryMb":8') }, 'integrity_error', /signature/);
    refused({ ...record, sha256: 'f'.repeat(64), approvedSha256: 'f'.repeat(64) }, 'integrity_error', /signature/);
    refused({ ...record, name: 'other' }, 'integrity_error', /signed manifest of web@2.0.0/);
  });

  it('refuses an approval wider than the signed request (a tampered record)', () => {
    const wider = { ...record.approved!, hosts: [...record.approved!.hosts, { host: 'evil.example', port: 0, methods: [] }] };
    assert.equal(approvalWithinRequest(wider, record.requested!), false);
    refused({ ...record, approved: wider }, 'integrity_error', /grants more/);
    refused({ ...record, approved: { ...record.approved!, secrets: ['vault_master'] } }, 'integrity_error', /grants more/);
  });

  it('checks the binary against the approved hash and the module policy', () => {
    const s = checkApproved(record, publisher, caps);
    assert.deepEqual(checkBinary(s, wasm, caps), { maxPages: 16 });
    const tampered = new Uint8Array(wasm);
    tampered[tampered.length - 2] = tampered[tampered.length - 2]! ^ 0xff;
    assert.throws(
      () => checkBinary(s, tampered, caps),
      (e: unknown) => e instanceof SkillRunError && e.code === 'integrity_error' && /modified after approval/.test(e.message),
    );
    assert.throws(
      () => checkBinary(s, wasm, { ...caps, memoryCapMb: 2 }),
      (e: unknown) => e instanceof SkillRunError && e.code === 'refused_module',
    );
  });
});

describe('version order', () => {
  it('orders semantic versions numerically, pre-releases first', async () => {
    const { compareVersions } = await import('./reader.ts');
    const sorted = ['1.10.0', '1.2.0', '1.2.0-rc.1', '0.9.9', '2.0.0'].sort(compareVersions);
    assert.deepEqual(sorted, ['0.9.9', '1.2.0-rc.1', '1.2.0', '1.10.0', '2.0.0']);
  });
});
