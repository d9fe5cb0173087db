// The Kubernetes manifests as the cluster would get them: `kubectl kustomize` over a
// copy of deploy/k8s with identity material from `talon init` (nothing is written
// into the work tree), every object validated against the Kubernetes schemas
// (kubernetes-models, offline), every container hardened, and the NetworkPolicies
// compared path by path with the table in docs/architecture.md §10.
import { before, after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: any;
  data?: Record<string, string>;
}

const KUBECTL = process.env.KUBECTL ?? 'kubectl';
const NAME = 'app.kubernetes.io/name';

function kubectlMissing(): string | undefined {
  try {
    execFileSync(KUBECTL, ['version', '--client'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return `${KUBECTL} is not installed (or set KUBECTL to its path): these checks render deploy/k8s with \`kubectl kustomize\``;
  }
}

/** deploy/k8s rendered with state generated the way deploy/README.md says, in a temporary copy. */
function render(dir: string): K8sObject[] {
  const k8s = join(dir, 'k8s');
  cpSync(join(REPO_ROOT, 'deploy', 'k8s'), k8s, { recursive: true, filter: (src) => !src.includes(`${join('k8s', 'state')}`) });
  const routes = [0, 1, 2].map((i) => `nats-${i}.nats-cluster`).join(',');
  execFileSync(
    process.execPath,
    [join(REPO_ROOT, 'packages/cli/src/bin.ts'), 'init', '--nats-port', '4222', '--nats-monitor', '0.0.0.0:8222', '--nats-cluster', routes],
    { env: { ...process.env, TALON_HOME: join(k8s, 'state') }, stdio: 'pipe' },
  );
  // What `talon db bootstrap` writes; its content does not matter here.
  mkdirSync(join(k8s, 'state', 'db'), { recursive: true });
  for (const s of ['memory', 'vault']) writeFileSync(join(k8s, 'state', 'db', `${s}.url`), `postgres://talon_${s}@postgres/talon\n`);
  const out = execFileSync(KUBECTL, ['kustomize', k8s], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return parseAllDocuments(out).map((d) => {
    assert.deepEqual(d.errors, [], 'kustomize output parses');
    return d.toJS() as K8sObject;
  });
}

/** The schema class of a built-in kind, or undefined for a custom resource (cert-manager, CloudNativePG). */
async function modelFor(o: K8sObject): Promise<(new (data: unknown) => { validate(): void }) | undefined> {
  if (o.apiVersion.includes('.') && !o.apiVersion.includes('k8s.io')) return undefined;
  const mod = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  return mod[o.kind];
}

async function validateAll(objects: K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objects) {
    assert.ok(
      o.apiVersion && o.kind && o.metadata?.name,
      `every object has apiVersion, kind and a name: ${JSON.stringify(o).slice(0, 120)}`,
    );
    const Model = await modelFor(o);
    if (!Model) continue;
    // kustomize folds long base64 values over lines, which the API server accepts; the schema's "byte" format does not.
    const data = o.data ? Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, v.replace(/\s+/g, '')])) : undefined;
    try {
      new Model(data ? { ...o, data } : o).validate();
    } catch (err) {
      problems.push(`${o.kind}/${o.metadata.name}: ${(err as Error).message}`);
    }
  }
  return problems;
}

// ---- network paths ----------------------------------------------------------

/** "from → to : port" rows of the table between the network-paths markers in docs/architecture.md. */
export function documentedPaths(markdown: string): Set<string> {
  const m = /<!-- network-paths:begin -->([\s\S]*?)<!-- network-paths:end -->/.exec(markdown);
  assert.ok(m, 'docs/architecture.md has the network-paths table');
  const rows = m[1]!
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .map((l) =>
      l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim().replaceAll('`', '')),
    )
    .filter((cells) => cells[0] !== 'from' && !/^-+$/.test(cells[0]!));
  return new Set(rows.map(([from, to, port]) => `${from} → ${to} : ${port}`));
}

function peer(sel: any): string {
  if (sel.ipBlock) return 'internet';
  if (sel.namespaceSelector && sel.podSelector?.matchLabels?.['k8s-app'] === 'kube-dns') return 'kube-dns';
  const name = sel.podSelector?.matchLabels?.[NAME];
  assert.ok(name, `a peer names a pod by ${NAME}: ${JSON.stringify(sel)}`);
  return name;
}

function subject(podSelector: any): string {
  const labels = podSelector?.matchLabels ?? {};
  if (labels[NAME]) return labels[NAME];
  if (labels['app.kubernetes.io/part-of'] === 'talon') return 'all';
  throw new Error(`policy selects pods by neither ${NAME} nor part-of: ${JSON.stringify(podSelector)}`);
}

const portOf = (p: { port: number; protocol?: string }) =>
  p.protocol && p.protocol !== 'TCP' ? `${p.port}/${p.protocol}` : String(p.port);

/** Every path the policies allow, as seen from the receiving side (ingress) and the sending side (egress). */
export function policyPaths(policies: K8sObject[]): { ingress: Set<string>; egress: Set<string> } {
  const ingress = new Set<string>();
  const egress = new Set<string>();
  for (const np of policies) {
    const self = subject(np.spec.podSelector);
    for (const rule of np.spec.ingress ?? []) {
      assert.ok(rule.ports?.length, `${np.metadata.name}: every ingress rule names its ports`);
      const froms: string[] = rule.from ? rule.from.map(peer) : ['any'];
      for (const f of froms) for (const p of rule.ports) ingress.add(`${f} → ${self} : ${portOf(p)}`);
    }
    for (const rule of np.spec.egress ?? []) {
      assert.ok(rule.ports?.length, `${np.metadata.name}: every egress rule names its ports`);
      const tos: string[] = rule.to ? rule.to.map(peer) : ['any'];
      for (const t of tos) for (const p of rule.ports) egress.add(`${self} → ${t} : ${portOf(p)}`);
    }
  }
  return { ingress, egress };
}

describe('kubernetes manifests, rendered', () => {
  const missing = kubectlMissing();
  let dir = '';
  let objects: K8sObject[] = [];
  const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
  const workloads = () => objects.filter((o) => ['Deployment', 'StatefulSet', 'Job', 'DaemonSet'].includes(o.kind));

  before(() => {
    if (missing) return;
    dir = mkdtempSync(join(tmpdir(), 'talon-kustomize-'));
    objects = render(dir);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('renders with kubectl kustomize', { skip: missing }, () => {
    assert.ok(objects.length > 30, `rendered ${objects.length} objects`);
    for (const o of objects)
      if (o.kind !== 'Namespace') assert.equal((o.metadata as { namespace?: string }).namespace, 'talon', o.metadata.name);
    const config = byKind('Secret').find((s) => s.metadata.name === 'nats-config')!;
    const conf = Buffer.from(config.data!['nats-server.conf']!.replace(/\s+/g, ''), 'base64').toString('utf8');
    assert.match(conf, /^server_name: \$NATS_SERVER_NAME$/m, 'each node names itself');
    assert.match(conf, /cluster \{/);
    for (const i of [0, 1, 2]) assert.ok(conf.includes(`@nats-${i}.nats-cluster:6222`), `route to nats-${i}`);
  });

  it('validates every built-in object against the Kubernetes schemas', { skip: missing }, async () => {
    assert.deepEqual(await validateAll(objects), []);
  });

  it('the schema check can fail: a wrong type is reported', { skip: missing }, async () => {
    const dep = structuredClone(byKind('Deployment')[0]!);
    dep.spec.replicas = 'two';
    const problems = await validateAll([dep]);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /replicas/);
  });

  it('runs every container non-root, read-only, without privilege escalation or capabilities', { skip: missing }, () => {
    assert.ok(workloads().length >= SERVICES.length + 3);
    for (const w of workloads()) {
      const pod = w.spec.template.spec;
      assert.equal(pod.automountServiceAccountToken, false, `${w.metadata.name}: no service account token`);
      assert.ok(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC, `${w.metadata.name}: no host namespaces`);
      for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
        const where = `${w.kind}/${w.metadata.name}/${c.name}`;
        const sc = c.securityContext ?? {};
        assert.equal(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
        assert.notEqual(sc.runAsUser ?? pod.securityContext?.runAsUser, 0, `${where}: not uid 0`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
        assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${where}: drops ALL capabilities`);
        assert.ok(!sc.privileged && !sc.capabilities?.add, `${where}: adds nothing`);
      }
    }
  });

  it('runs two replicas of every service behind a PodDisruptionBudget, NATS as three nodes', { skip: missing }, () => {
    const pdbs = byKind('PodDisruptionBudget');
    for (const s of SERVICES) {
      const dep = byKind('Deployment').find((d) => d.metadata.name === s)!;
      assert.ok(dep.spec.replicas >= 2, `${s} replicas`);
      const pdb = pdbs.find((p) => p.spec.selector.matchLabels[NAME] === s);
      assert.equal(pdb?.spec.minAvailable, 1, `${s} has a PodDisruptionBudget`);
    }
    const nats = byKind('StatefulSet').find((d) => d.metadata.name === 'nats')!;
    assert.equal(nats.spec.replicas, 3);
    assert.equal(nats.spec.podManagementPolicy, 'Parallel', 'nodes start together: JetStream needs a quorum before any is ready');
    const headless = byKind('Service').find((s) => s.metadata.name === nats.spec.serviceName)!;
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(headless.spec.publishNotReadyAddresses, true);
    const job = byKind('Job').find((j) => j.metadata.name === 'talon-provision')!;
    const args: string[] = job.spec.template.spec.containers[0].args;
    assert.equal(args[args.indexOf('--replicas') + 1], '3', 'streams and buckets get three copies');
  });

  it('allows exactly the network paths of docs/architecture.md §10, from both ends', { skip: missing }, () => {
    const policies = byKind('NetworkPolicy');
    const deny = policies.find((p) => p.metadata.name === 'default-deny')!;
    assert.deepEqual(deny.spec, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    const { ingress, egress } = policyPaths(policies.filter((p) => p !== deny));
    // Every pod is isolated both ways, so a path between two Talon pods needs a rule at each end.
    const pods = new Set(policies.map((p) => p.spec.podSelector.matchLabels?.[NAME]).filter(Boolean));
    const between = (path: string) => {
      const [, from, to] = /^(\S+) → (\S+) :/.exec(path)!;
      return pods.has(from!) && pods.has(to!);
    };
    for (const p of ingress) if (between(p)) assert.ok(egress.has(p), `${p} is admitted but its sender may not send it`);
    for (const p of egress) if (between(p)) assert.ok(ingress.has(p), `${p} may be sent but its receiver does not admit it`);
    for (const p of policies.filter((x) => x !== deny && x.metadata.name !== 'allow-dns'))
      assert.deepEqual(p.spec.policyTypes, ['Ingress', 'Egress'], `${p.metadata.name} isolates both ways`);
    const allowed = new Set([...ingress, ...egress]);
    const documented = documentedPaths(readFileSync(join(REPO_ROOT, 'docs', 'architecture.md'), 'utf8'));
    assert.deepEqual([...allowed].filter((p) => !documented.has(p)).sort(), [], 'allowed by the policies, not in the table');
    assert.deepEqual([...documented].filter((p) => !allowed.has(p)).sort(), [], 'in the table, not allowed by the policies');
    // Only egress leaves, and never to private ranges.
    const out = policies
      .find((p) => p.metadata.name === 'egress')!
      .spec.egress.flatMap((r: any) => r.to ?? [])
      .find((t: any) => t.ipBlock);
    for (const cidr of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '100.64.0.0/10', '127.0.0.0/8'])
      assert.ok(out.ipBlock.except.includes(cidr), cidr);
  });

  it('the path comparison can fail: one extra rule is found', () => {
    const np = (name: string, spec: any): K8sObject => ({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name },
      spec,
    });
    const sel = (n: string) => ({ podSelector: { matchLabels: { [NAME]: n } } });
    const { ingress, egress } = policyPaths([
      np('vault', { podSelector: sel('vault').podSelector, ingress: [{ from: [sel('egress'), sel('sandbox')], ports: [{ port: 7404 }] }] }),
      np('sandbox', {
        podSelector: sel('sandbox').podSelector,
        egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }], ports: [{ port: 443 }] }],
      }),
    ]);
    assert.deepEqual([...ingress], ['egress → vault : 7404', 'sandbox → vault : 7404']);
    assert.deepEqual([...egress], ['sandbox → internet : 443']);
    assert.deepEqual(
      documentedPaths(
        '<!-- network-paths:begin -->\n| from | to | port |\n| -- | -- | -- |\n| `a` | b | 53/UDP |\n<!-- network-paths:end -->',
      ),
      new Set(['a → b : 53/UDP']),
    );
  });

  it('gives only the admin pod the admin certificate, and only it and the provisioning Job the NATS admin seed', { skip: missing }, () => {
    const secretsOf = (w: K8sObject): string[] =>
      (w.spec.template.spec.volumes ?? []).flatMap((v: any) => [
        ...(v.secret ? [v.secret.secretName] : []),
        ...(v.projected?.sources ?? []).filter((s: any) => s.secret).map((s: any) => s.secret.name),
      ]);
    const admin = byKind('Deployment').find((d) => d.metadata.name === 'admin')!;
    assert.deepEqual(secretsOf(admin).sort(), ['admin-tls', 'nats-admin-seed', 'talon-ca']);
    const env = Object.fromEntries(admin.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    assert.equal(env.TALON_VAULT_ADDR, 'vault:7404');
    assert.ok(env.TALON_NATS_URL.split(',').length === 3);
    for (const w of workloads().filter((x) => x !== admin)) {
      assert.ok(!secretsOf(w).includes('admin-tls'), `${w.metadata.name} holds the admin certificate`);
      if (w.metadata.name !== 'talon-provision')
        assert.ok(!secretsOf(w).includes('nats-admin-seed'), `${w.metadata.name} holds the NATS admin seed`);
    }
    const cert = byKind('Certificate').find((c) => c.metadata.name === 'admin-tls')!;
    assert.deepEqual(cert.spec.uris, ['spiffe://talon/admin']);
    assert.deepEqual(cert.spec.usages, ['client auth']);
  });

  it('leaves the CloudNativePG example out of the default build, and it parses', { skip: missing }, () => {
    assert.ok(!objects.some((o) => o.kind === 'Cluster'));
    const docs = parseAllDocuments(readFileSync(join(REPO_ROOT, 'deploy/k8s/examples/cloudnativepg.yaml'), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, []);
      return d.toJS() as K8sObject;
    });
    const cluster = docs.find((d) => d.kind === 'Cluster')!;
    assert.equal(cluster.apiVersion, 'postgresql.cnpg.io/v1');
    assert.ok(cluster.spec.instances >= 3);
    assert.ok(cluster.spec.bootstrap.initdb.postInitApplicationSQL.some((q: string) => /create extension if not exists vector/i.test(q)));
  });
});
