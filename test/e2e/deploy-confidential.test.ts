// The confidential-computing overlay (deploy/overlays/confidential,
// docs/confidential-computing.md) rendered by `kubectl kustomize` for real, offline,
// over a copy of deploy/k8s with placeholder state files (talon init writes the real
// ones): the vault and egress, and nothing else, run under a confidential
// RuntimeClass, the vault gets attestation settings that .env.example documents, and
// the base's hardening survives the patches.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';

const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const haveKubectl = spawnSync(KUBECTL, ['version', '--client'], { encoding: 'utf8' }).status === 0;
const documented = new Set(
  [...readFileSync(join(REPO_ROOT, '.env.example'), 'utf8').matchAll(/^# ([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!),
);
const STATE = [
  'nats/nats-server.conf',
  'pki/ca.crt',
  'nats/gateway.nk',
  'nats/orchestrator.nk',
  'nats/egress.nk',
  'nats/sandbox.nk',
  'nats/admin.nk',
  'db/memory.url',
  'db/vault.url',
];

interface Doc {
  kind: string;
  metadata: { name: string };
  spec?: any;
  data?: Record<string, string>;
}

describe('kubernetes overlay: confidential', { skip: haveKubectl ? false : `${KUBECTL} is not installed` }, () => {
  const work = mkdtempSync(join(tmpdir(), 'talon-kustomize-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  const render = (): Doc[] => {
    cpSync(join(REPO_ROOT, 'deploy', 'k8s'), join(work, 'deploy', 'k8s'), { recursive: true });
    cpSync(join(REPO_ROOT, 'deploy', 'overlays'), join(work, 'deploy', 'overlays'), { recursive: true });
    for (const f of STATE) {
      const p = join(work, 'deploy', 'k8s', 'state', f);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, 'placeholder\n');
    }
    const r = spawnSync(KUBECTL, ['kustomize', join(work, 'deploy', 'overlays', 'confidential')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `kubectl kustomize failed: ${r.stderr}`);
    return parseAllDocuments(r.stdout).map((d) => {
      assert.deepEqual(d.errors, []);
      return d.toJSON() as Doc;
    });
  };
  const docs = render();
  const deployment = (name: string) => docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name)!;

  it('renders every service of the base', () => {
    for (const s of SERVICES) assert.ok(deployment(s), `Deployment ${s}`);
  });

  it('runs the vault and egress, and only them, under a confidential RuntimeClass', () => {
    for (const s of SERVICES) {
      const rc = deployment(s).spec.template.spec.runtimeClassName;
      if (s === 'vault' || s === 'egress') assert.match(rc, /^kata-/, `${s} runtimeClassName`);
      else assert.equal(rc, undefined, `${s} stays on the default runtime`);
    }
  });

  it('gives the vault attestation settings that are documented and require a verifier', () => {
    const c = deployment('vault').spec.template.spec.containers[0];
    const ref = c.envFrom?.[0]?.configMapRef?.name as string;
    assert.match(ref, /^vault-attestation/);
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === ref);
    assert.ok(cm?.data, `ConfigMap ${ref}`);
    for (const k of Object.keys(cm.data)) {
      assert.ok(documented.has(k), `${k} is not in .env.example`);
      assert.match(k, /^VAULT_ATTESTATION/, 'only attestation settings');
    }
    assert.notEqual(cm.data.VAULT_ATTESTATION, 'none');
    assert.match(cm.data.VAULT_ATTESTATION_VERIFIER_URL ?? '', /^(http:\/\/(127\.0\.0\.1|\[::1\])[:/]|unix:\/)/, 'a loopback verifier');
    for (const s of SERVICES.filter((x) => x !== 'vault'))
      assert.equal(deployment(s).spec.template.spec.containers[0].envFrom, undefined, `${s} gets no attestation settings`);
  });

  it('keeps the base hardening and network shape', () => {
    for (const s of ['vault', 'egress']) {
      const pod = deployment(s).spec.template.spec;
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.containers[0].securityContext.readOnlyRootFilesystem, true);
    }
    const policies = docs.filter((d) => d.kind === 'NetworkPolicy').map((d) => d.metadata.name);
    assert.ok(policies.includes('default-deny') && policies.includes('vault'));
    const extra = docs.find((d) => d.kind === 'NetworkPolicy' && d.metadata.name === 'vault-attestation')!;
    assert.deepEqual(extra.spec.podSelector.matchLabels, { 'app.kubernetes.io/name': 'vault' });
    assert.deepEqual(extra.spec.policyTypes, ['Egress']);
    for (const rule of extra.spec.egress)
      for (const to of rule.to) assert.match(to.ipBlock.cidr, /\/32$/, 'one verifier address, not a range');
  });
});
