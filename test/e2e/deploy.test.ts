// Static validation of the deployment files (no Docker engine or cluster here):
// they parse, name every service consistently, give each container only its own
// key material, and encode the network shape of docs/architecture.md.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';

const deploy = join(REPO_ROOT, 'deploy');
const envExample = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8');
const documented = new Set([...envExample.matchAll(/^# ([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
const isDocumented = (k: string) => documented.has(k) || (k.endsWith('_FILE') && documented.has(k.slice(0, -5)));

describe('docker compose file', () => {
  const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8')) as {
    services: Record<
      string,
      {
        command?: string[];
        environment?: Record<string, string>;
        volumes?: string[];
        networks?: string[];
        healthcheck?: { test: string[] };
      }
    >;
    networks: Record<string, { internal?: boolean }>;
  };

  it('has one container per service, named like the service, running its main', () => {
    for (const s of SERVICES) {
      const c = compose.services[s];
      assert.ok(c, `compose service ${s}`);
      assert.deepEqual(c.command, [`services/${s}/src/main.ts`]);
      assert.equal(c.environment?.OTEL_SERVICE_NAME, s);
      assert.ok(c.healthcheck?.test.includes('health') && c.healthcheck.test.includes(s), `${s} health check uses talon health`);
    }
  });

  it('mounts each service only its own private key and NATS seed; vault and memory get no NATS seed', () => {
    for (const s of SERVICES) {
      const mounts = (compose.services[s]!.volumes ?? []).map((v) => v.split(':')[0]!);
      for (const other of SERVICES.filter((o) => o !== s)) {
        assert.ok(!mounts.some((m) => m.endsWith(`/${other}.key`) || m.endsWith(`/${other}.nk`)), `${s} mounts ${other}'s key material`);
      }
      if (s === 'vault' || s === 'memory') assert.ok(!mounts.some((m) => m.endsWith('.nk')), `${s} has no NATS credentials`);
    }
  });

  it('lets only egress reach a network with a route out (besides the published gateway port)', () => {
    const open = Object.entries(compose.networks)
      .filter(([, n]) => !n.internal)
      .map(([k]) => k);
    for (const s of SERVICES) {
      const nets = compose.services[s]!.networks ?? [];
      const outside = nets.filter((n) => open.includes(n));
      if (s === 'egress') assert.deepEqual(outside, ['outside']);
      else if (s === 'gateway') assert.deepEqual(outside, ['edge']);
      else assert.deepEqual(outside, [], `${s} must be on internal networks only`);
    }
    const onVaultNet = SERVICES.filter((s) => compose.services[s]!.networks?.includes('vault'));
    assert.deepEqual(onVaultNet.sort(), ['egress', 'vault']);
  });

  it('provisions JetStream in a one-shot service that holds only the admin seed, which every NATS service waits for', () => {
    const p = compose.services.provision as (typeof compose.services)[string] & { depends_on?: Record<string, { condition: string }> };
    assert.deepEqual(p.command?.slice(0, 2), ['packages/cli/src/bin.ts', 'provision']);
    assert.deepEqual(
      (p.volumes ?? []).map((v) => v.split(':')[0]),
      ['./state/nats/admin.nk'],
    );
    assert.deepEqual(p.networks, ['bus']);
    for (const s of ['gateway', 'orchestrator', 'egress', 'sandbox']) {
      const deps = (compose.services[s] as { depends_on?: Record<string, { condition: string }> }).depends_on;
      assert.equal(deps?.provision?.condition, 'service_completed_successfully', `${s} waits for provisioning`);
    }
    for (const s of SERVICES)
      assert.ok(!(compose.services[s]!.volumes ?? []).some((v) => v.includes('admin.')), `${s} holds no admin material`);
  });

  it('uses only documented configuration keys', () => {
    for (const s of SERVICES)
      for (const k of Object.keys(compose.services[s]!.environment ?? {})) assert.ok(isDocumented(k), `${s}: ${k} is not in .env.example`);
  });
});

describe('kubernetes manifests', () => {
  const files = readdirSync(join(deploy, 'k8s')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  const docs = files.flatMap((f) =>
    parseAllDocuments(readFileSync(join(deploy, 'k8s', f), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, [], `${f} parses`);
      return d.toJSON() as { kind: string; metadata: { name: string }; spec: any };
    }),
  );
  const byKind = (kind: string) => docs.filter((d) => d?.kind === kind);

  it('every referenced resource file exists and parses', () => {
    const k = parse(readFileSync(join(deploy, 'k8s', 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    for (const r of k.resources) assert.ok(files.includes(r), r);
  });

  it('has a hardened Deployment, a Service and a mTLS health probe per service', () => {
    for (const s of SERVICES) {
      const dep = byKind('Deployment').find((d) => d.metadata.name === s);
      assert.ok(dep, `Deployment ${s}`);
      const pod = dep.spec.template.spec;
      const c = pod.containers[0];
      assert.deepEqual(c.args, [`services/${s}/src/main.ts`]);
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      assert.ok(c.readinessProbe.exec.command.includes('health') && c.readinessProbe.exec.command.includes(s));
      const env = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]));
      assert.equal(env.OTEL_SERVICE_NAME, s);
      for (const k of Object.keys(env)) assert.ok(isDocumented(k), `${s}: ${k} is not in .env.example`);
      const secretNames = pod.volumes.filter((v: any) => v.secret).map((v: any) => v.secret.secretName);
      for (const other of SERVICES.filter((o) => o !== s)) assert.ok(!secretNames.includes(`${other}-tls`), `${s} mounts ${other}-tls`);
      assert.ok(
        byKind('Service').some((d) => d.metadata.name === s),
        `Service ${s}`,
      );
    }
  });

  it('denies by default and opens only the paths of the design', () => {
    const np = Object.fromEntries(byKind('NetworkPolicy').map((d) => [d.metadata.name, d.spec]));
    assert.deepEqual(np['default-deny']!.podSelector, {});
    assert.deepEqual(np['default-deny']!.policyTypes, ['Ingress', 'Egress']);
    const from = (name: string) =>
      (np[name]!.ingress ?? []).flatMap((r: any) => (r.from ?? []).map((f: any) => f.podSelector?.matchLabels?.['app.kubernetes.io/name']));
    assert.deepEqual(from('vault'), ['egress']);
    assert.deepEqual(from('memory'), ['orchestrator']);
    const ipBlocks = (name: string) => (np[name]!.egress ?? []).flatMap((r: any) => (r.to ?? []).filter((t: any) => t.ipBlock));
    for (const s of SERVICES.filter((x) => x !== 'egress')) assert.deepEqual(ipBlocks(s), [], `${s} must not reach arbitrary addresses`);
    assert.ok(ipBlocks('egress')[0].ipBlock.except.includes('169.254.0.0/16'));
    const sandboxTo = np.sandbox!.egress.flatMap((r: any) => r.to.map((t: any) => t.podSelector.matchLabels['app.kubernetes.io/name']));
    assert.deepEqual(sandboxTo.sort(), ['egress', 'nats']);
  });

  it('provisions JetStream in a Job that mounts only the admin seed and may reach only NATS', () => {
    const job = byKind('Job').find((d) => d.metadata.name === 'talon-provision');
    assert.ok(job, 'Job talon-provision');
    const pod = job.spec.template.spec;
    assert.deepEqual(pod.containers[0].args.slice(0, 2), ['packages/cli/src/bin.ts', 'provision']);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(
      pod.volumes.map((v: any) => v.secret?.secretName),
      ['nats-admin-seed'],
    );
    const np = byKind('NetworkPolicy').find((d) => d.metadata.name === 'provision')!.spec;
    assert.deepEqual(np.ingress, []);
    assert.deepEqual(
      np.egress.flatMap((r: any) => r.to.map((t: any) => t.podSelector.matchLabels['app.kubernetes.io/name'])),
      ['nats'],
    );
    for (const d of byKind('Deployment'))
      assert.ok(
        !(d.spec.template.spec.volumes ?? []).some((v: any) => v.secret?.secretName === 'nats-admin-seed'),
        `${d.metadata.name} holds no admin seed`,
      );
  });

  it('issues every workload certificate with its SPIFFE URI', () => {
    for (const s of SERVICES) {
      const cert = byKind('Certificate').find((d) => d.metadata.name === `${s}-tls`);
      assert.deepEqual(cert?.spec.uris, [`spiffe://talon/${s}`]);
    }
  });
});
