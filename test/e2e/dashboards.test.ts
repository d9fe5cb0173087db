// The shipped Grafana dashboards (deploy/grafana/dashboards) against what Talon really
// exports: every panel's PromQL is read, each metric it names must be in the catalogue
// (packages/kit/src/metrics.ts) and in a real scrape of the running services after a
// turn, each label it uses must be one of that metric's, counters and histograms must
// go through rate()/histogram_quantile(). A renamed metric or label breaks this test.
// Also: `talon up`'s TALON_HOME/prometheus/targets.json lists every instance, and the
// compose profile `observability` and the Kubernetes scrape configuration agree with
// the services (ports, path, labels).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { METRICS, METRICS_PATH, type MetricDef } from '@talon/kit/metrics';
import { DEFAULT_PORTS, SERVICES } from '@talon/kit/service';
import { REPO_ROOT } from '@talon/cli/platform';
import { startTestPlatform, waitFor, type TestPlatform } from '@talon/testkit';

const GRAFANA = join(REPO_ROOT, 'deploy', 'grafana');
const DASHBOARD_DIR = join(GRAFANA, 'dashboards');

// ---- a small PromQL reader --------------------------------------------------------

/** A metric named in an expression, with the functions and aggregations around it (outermost first). */
export interface MetricRef {
  name: string;
  within: string[];
}

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
/** Keywords followed by a parenthesised list of label names. */
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan', 'atan2']);
const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
/** A number, or a duration such as 5m or 1h30m (after `offset`). */
const NUMBER = /(?:0x[0-9a-f]+|[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)(?:(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)?/iy;

/**
 * The metric names and label names of a PromQL expression as Grafana stores it
 * (template variables such as `$instance` or `[$__rate_interval]` included). Metric
 * names are identifiers outside `{}` that are neither followed by `(` (a function)
 * nor keywords; label names are those inside `{}` and in by/without/on/ignoring lists.
 */
export function promqlRefs(expr: string): { metrics: MetricRef[]; labels: Set<string> } {
  const metrics: MetricRef[] = [];
  const labels = new Set<string>();
  const stack: string[] = [];
  let pendingAggregation: string | undefined;
  let braces = 0;
  let i = 0;
  const skipSpace = () => {
    while (i < expr.length && /\s/.test(expr[i]!)) i++;
  };
  const ident = (): string | undefined => {
    IDENT.lastIndex = i;
    const m = IDENT.exec(expr);
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  while (i < expr.length) {
    const c = expr[i]!;
    if (c === '"' || c === "'" || c === '`') {
      i++;
      while (i < expr.length && expr[i] !== c) i += expr[i] === '\\' && c !== '`' ? 2 : 1;
      i++;
    } else if (c === '#') {
      while (i < expr.length && expr[i] !== '\n') i++;
    } else if (c === '$') {
      // A Grafana variable: $name or ${name:format}.
      i++;
      if (expr[i] === '{') while (i < expr.length && expr[i] !== '}') i++;
      else ident();
      if (expr[i] === '}') i++;
    } else if (c === '[') {
      // A range or subquery window: durations and variables only.
      while (i < expr.length && expr[i] !== ']') i++;
      i++;
    } else if (c === '{') {
      braces++;
      i++;
    } else if (c === '}') {
      braces--;
      i++;
    } else if (c === '(') {
      stack.push(pendingAggregation ?? '(');
      pendingAggregation = undefined;
      i++;
    } else if (c === ')') {
      stack.pop();
      i++;
    } else if (/[0-9.]/.test(c)) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(expr);
      i += m ? m[0].length : 1;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const name = ident()!;
      if (braces > 0) {
        labels.add(name);
        continue;
      }
      skipSpace();
      if (LABEL_LISTS.has(name.toLowerCase())) {
        if (expr[i] === '(') {
          const close = expr.indexOf(')', i);
          for (const l of expr.slice(i + 1, close).split(',')) if (l.trim()) labels.add(l.trim());
          i = close + 1;
        }
        continue;
      }
      if (expr[i] === '(') {
        stack.push(name);
        i++;
        continue;
      }
      if (AGGREGATIONS.has(name)) {
        // `sum by (le) (…)`: the aggregation's argument comes after its label list.
        pendingAggregation = name;
        continue;
      }
      if (KEYWORDS.has(name.toLowerCase())) continue;
      metrics.push({ name, within: stack.filter((f) => f !== '(') });
    } else i++;
  }
  return { metrics, labels };
}

// ---- the dashboards ----------------------------------------------------------------

interface Target {
  expr?: string;
  refId: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; includeAll?: boolean; multi?: boolean }> };
}

const dashboardFiles = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith('.json'));
const dashboards: Array<[string, Dashboard]> = dashboardFiles.map((f) => [
  f,
  JSON.parse(readFileSync(join(DASHBOARD_DIR, f), 'utf8')) as Dashboard,
]);
const allPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
/** Every query of every panel: [dashboard file, panel title, expression]. */
const queries: Array<[string, string, string]> = dashboards.flatMap(([f, d]) =>
  allPanels(d).flatMap((p) => (p.targets ?? []).filter((t) => t.expr).map((t) => [f, p.title, t.expr!] as [string, string, string])),
);

/** The metric and label of each `label_values(metric{…}, label)` variable query: [dashboard file, variable, metric, label]. */
const variableQueries: Array<[string, string, string, string]> = dashboards.flatMap(([f, d]) =>
  d.templating.list.flatMap((v): Array<[string, string, string, string]> => {
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
    const m = q ? /^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?,\s*([a-zA-Z_]\w*)\)$/.exec(q) : null;
    return v.type === 'query' ? [[f, v.name, m?.[1] ?? `unreadable: ${String(q)}`, m?.[2] ?? '']] : [];
  }),
);

const CATALOGUE = new Map((Object.values(METRICS) as MetricDef[]).map((d) => [d.name, d]));
const HISTOGRAM_SUFFIX = /_(bucket|sum|count)$/;
/** The catalogue entry a scraped name belongs to (`x_bucket` → histogram `x`). */
function definition(name: string): MetricDef | undefined {
  const direct = CATALOGUE.get(name);
  if (direct) return direct;
  const base = CATALOGUE.get(name.replace(HISTOGRAM_SUFFIX, ''));
  return base?.kind === 'histogram' ? base : undefined;
}
/** Labels on every series whatever collects it: the resource's (kit metrics), and the scraper's target labels. */
const COMMON_LABELS = ['service_name', 'service_instance_id', 'job', 'instance', 'service'];
const RATES = ['rate', 'increase', 'irate'];

describe('PromQL reader', () => {
  it('finds metric names, not functions, keywords, labels, strings, durations or variables', () => {
    const r = promqlRefs(
      'histogram_quantile(0.95, sum by (le, model) (rate(talon_x_bucket{service_name=~"$service", a="b{c}"}[$__rate_interval]))) ' +
        '/ on (model) group_left () max without (le) (talon_y offset 1h30m) or vector(0) and time() - ${var:csv} > bool 1e3',
    );
    assert.deepEqual(
      r.metrics.map((m) => m.name),
      ['talon_x_bucket', 'talon_y'],
    );
    assert.deepEqual(r.metrics[0]!.within, ['histogram_quantile', 'sum', 'rate']);
    assert.deepEqual(r.metrics[1]!.within, ['max']);
    assert.deepEqual([...r.labels].sort(), ['a', 'le', 'model', 'service_name']);
  });

  it('would catch a renamed metric: the name read is not in the catalogue', () => {
    const { metrics } = promqlRefs('sum(rate(talon_turn_total[5m]))');
    assert.deepEqual(
      metrics.map((m) => m.name),
      ['talon_turn_total'],
    );
    assert.equal(definition('talon_turn_total'), undefined);
    assert.equal(definition('talon_turns_total')?.kind, 'counter');
    assert.equal(definition('talon_turn_duration_seconds_bucket')?.kind, 'histogram');
    assert.equal(definition('process_cpu_seconds_count'), undefined, 'only a histogram has _count series');
  });
});

describe('Grafana dashboards', () => {
  it('ship an overview, a secrets-boundary and an agent dashboard, with unique uids and panel ids', () => {
    assert.deepEqual(dashboards.map(([, d]) => d.uid).sort(), ['talon-agent', 'talon-overview', 'talon-secrets']);
    for (const [f, d] of dashboards) {
      const ids = allPanels(d).map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, `${f}: panel ids are unique`);
    }
  });

  it('let the viewer pick the data source, the services and the instances', () => {
    for (const [f, d] of dashboards) {
      const vars = Object.fromEntries(d.templating.list.map((v) => [v.name, v]));
      assert.equal(vars.datasource?.type, 'datasource', f);
      for (const v of ['service', 'instance']) {
        assert.equal(vars[v]?.type, 'query', `${f}: $${v}`);
        assert.ok(vars[v]!.includeAll && vars[v]!.multi, `${f}: $${v} allows several and all`);
      }
      for (const p of allPanels(d).filter((x) => x.type !== 'row')) {
        assert.ok(p.targets?.length, `${f} "${p.title}" has queries`);
        assert.equal(p.datasource?.uid, '${datasource}', `${f} "${p.title}" uses the chosen data source`);
        for (const t of p.targets!) {
          assert.ok(t.expr, `${f} "${p.title}" ${t.refId} has an expression`);
          assert.match(t.expr, /service_name=~"\$service"/, `${f} "${p.title}" follows $service`);
          assert.match(t.expr, /service_instance_id=~"\$instance"/, `${f} "${p.title}" follows $instance`);
        }
      }
    }
  });

  it('name only catalogued metrics, with their own labels, through rate() and histogram_quantile()', () => {
    assert.ok(queries.length > 50, `${queries.length} queries`);
    for (const [f, title, expr] of queries) {
      const where = `${f} "${title}": ${expr}`;
      const { metrics, labels } = promqlRefs(expr);
      assert.ok(metrics.length > 0, `${where} names a metric`);
      const allowed = new Set(COMMON_LABELS);
      for (const m of metrics) {
        const d = definition(m.name);
        assert.ok(d, `${where}: ${m.name} is not a metric Talon exports (packages/kit/src/metrics.ts)`);
        for (const l of d.labels) allowed.add(l);
        const rated = m.within.some((fn) => RATES.includes(fn));
        if (m.name.endsWith('_bucket')) {
          allowed.add('le');
          assert.ok(m.within.includes('histogram_quantile') && rated, `${where}: ${m.name} goes through rate() into histogram_quantile()`);
          assert.ok(labels.has('le'), `${where}: histogram_quantile needs the le label kept`);
        } else if (d.kind === 'counter' || d.kind === 'histogram') {
          assert.ok(rated, `${where}: ${m.name} is a counter: use rate() or increase()`);
        } else {
          assert.ok(!rated, `${where}: ${m.name} is a gauge: rate() means nothing on it`);
        }
      }
      for (const l of labels) assert.ok(allowed.has(l), `${where}: label ${l} is not on ${metrics.map((m) => m.name).join(', ')}`);
    }
    assert.equal(variableQueries.length, 2 * dashboards.length);
    for (const [f, v, metric, label] of variableQueries) {
      assert.ok(definition(metric), `${f} $${v}: ${metric} is not a metric Talon exports`);
      assert.ok(COMMON_LABELS.includes(label), `${f} $${v}: ${label} is not on every series`);
    }
  });

  it('cover every metric in the catalogue, and each dashboard its subject', () => {
    const named = (file: string) =>
      new Set(
        queries
          .filter(([f]) => f === file)
          .flatMap(([, , e]) => promqlRefs(e).metrics.map((m) => definition(m.name)?.name))
          .filter((n): n is string => n !== undefined),
      );
    const everywhere = new Set(dashboardFiles.flatMap((f) => [...named(f)]));
    assert.deepEqual(
      [...CATALOGUE.keys()].filter((n) => !everywhere.has(n)),
      [],
      'metrics on no dashboard',
    );
    const subjects: Record<string, string[]> = {
      // All but two details of the sandbox, which the agent dashboard has.
      'talon-overview.json': [...CATALOGUE.keys()].filter(
        (n) => n !== METRICS.sandboxInvocationDuration.name && n !== METRICS.sandboxHosts.name,
      ),
      'talon-secrets.json': [
        METRICS.egressDecisions.name,
        METRICS.egressLeaksBlocked.name,
        METRICS.vaultResolves.name,
        METRICS.vaultSealed.name,
        METRICS.gatewayAuthFailures.name,
        METRICS.gatewayRateLimited.name,
      ],
      'talon-agent.json': [
        METRICS.turns.name,
        METRICS.turnDuration.name,
        METRICS.llmRequests.name,
        METRICS.llmTokens.name,
        METRICS.llmRequestDuration.name,
        METRICS.sandboxInvocations.name,
        METRICS.sandboxInvocationDuration.name,
        METRICS.sandboxHosts.name,
        METRICS.memorySearchDuration.name,
        METRICS.jetstreamConsumerPending.name,
        METRICS.jetstreamConsumerRedelivered.name,
      ],
    };
    for (const [file, want] of Object.entries(subjects)) {
      const has = named(file);
      assert.deepEqual(
        want.filter((n) => !has.has(n)),
        [],
        `${file} misses`,
      );
    }
  });
});

// ---- the running platform ---------------------------------------------------------

/** Metric names a /metrics body declares or samples (`x_bucket`, `x_sum`, `x_count` for a histogram). */
export function exportedNames(body: string): Set<string> {
  const names = new Set<string>();
  for (const line of body.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      names.add(type[1]!);
      if (type[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(type[1]! + s);
    } else if (/^[a-zA-Z_:]/.test(line)) names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

describe('dashboards against a real scrape, and talon up discovery', () => {
  let tp: TestPlatform;
  const instances = () => SERVICES.flatMap((s) => tp.platform.instanceNames(s).map((i) => [s, i] as const));
  const scrape = async (address: string) => {
    const res = await fetch(`http://${address}${METRICS_PATH}`, { signal: AbortSignal.timeout(10_000) });
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
  };

  before(async () => {
    // Two orchestrators: discovery and the per-instance label must tell them apart.
    tp = await startTestPlatform({ database: 'embedded', replicas: { orchestrator: 2 } });
    const token = await tp.token('dashboards');
    const res = await tp.chat(token, { messages: [{ role: 'user', content: 'hello dashboards' }] });
    assert.equal(res.status, 200, res.text);
  });
  after(async () => {
    await tp?.stop();
  });

  it('every metric a dashboard names is exported by a running service', async () => {
    const wanted = new Set([
      ...queries.flatMap(([, , e]) => promqlRefs(e).metrics.map((m) => m.name)),
      ...variableQueries.map(([, , metric]) => metric),
    ]);
    let missing: string[] = [];
    // Gauges read at scrape time (JetStream consumer info) appear once their first reading is in.
    await waitFor(
      async () => {
        const exported = new Set<string>();
        for (const [, i] of instances()) {
          const r = await scrape(`127.0.0.1:${tp.platform.portOf(i, 'internal')}`);
          assert.equal(r.status, 200, `${i} ${METRICS_PATH}`);
          for (const n of exportedNames(r.body)) exported.add(n);
        }
        missing = [...wanted].filter((n) => !exported.has(n)).sort();
        return missing.length === 0;
      },
      30_000,
      'every metric of the dashboards in a scrape',
    ).catch(() => assert.deepEqual(missing, [], 'named by a dashboard, exported by no service'));
  });

  it('labels every series with the service and instance the dashboards filter by', async () => {
    const ids = new Set<string>();
    for (const [s, i] of instances()) {
      const { body, type } = await scrape(`127.0.0.1:${tp.platform.portOf(i, 'internal')}`);
      assert.match(type, /^text\/plain/);
      const samples = body.split('\n').filter((l) => /^[a-zA-Z_:]/.test(l) && !l.startsWith('target_info'));
      assert.ok(samples.length > 0, `${i} has samples`);
      for (const l of samples) {
        assert.ok(l.includes(`service_name="${s}"`), `${i}: ${l}`);
        const id = /service_instance_id="([^"]+)"/.exec(l)?.[1];
        assert.ok(id, `${i}: ${l}`);
        ids.add(id);
      }
    }
    assert.equal(ids.size, instances().length, 'each instance has its own service_instance_id');
  });

  it('writes TALON_HOME/prometheus/targets.json listing every instance, and a prometheus.yml reading it', async () => {
    const dir = join(tp.home, 'prometheus');
    const groups = JSON.parse(readFileSync(join(dir, 'targets.json'), 'utf8')) as Array<{
      targets: string[];
      labels: Record<string, string>;
    }>;
    const want = instances()
      .map(([s, i]) => ({ targets: [`127.0.0.1:${tp.platform.portOf(i, 'internal')}`], labels: { service: s, instance: i } }))
      .sort((a, b) => (a.labels.instance < b.labels.instance ? -1 : 1));
    assert.ok(want.some((g) => g.labels.instance === 'orchestrator-2'));
    assert.deepEqual(groups, want);
    // What Prometheus would do with it: every target answers with that service's metrics.
    for (const g of groups) {
      const r = await scrape(g.targets[0]!);
      assert.equal(r.status, 200);
      assert.ok(r.body.includes(`service_name="${g.labels.service}"`), g.labels.instance);
    }
    const cfg = parse(readFileSync(join(dir, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ metrics_path: string; file_sd_configs: Array<{ files: string[] }> }>;
    };
    assert.equal(cfg.scrape_configs[0]!.metrics_path, METRICS_PATH);
    assert.deepEqual(cfg.scrape_configs[0]!.file_sd_configs[0]!.files, [join(dir, 'targets.json')]);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.tmp')),
      [],
      'no temporary file left behind',
    );
  });
});

// ---- deployments ------------------------------------------------------------------

describe('scrape configuration of the deployments', () => {
  const deploy = join(REPO_ROOT, 'deploy');

  it('compose: the observability profile is optional, pinned, hardened, and reaches every service', () => {
    const compose = parse(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as {
      services: Record<
        string,
        {
          image?: string;
          profiles?: string[];
          read_only?: boolean;
          cap_drop?: string[];
          security_opt?: string[];
          user?: string;
          volumes?: string[];
          networks?: string[];
          environment?: Record<string, string>;
          ports?: string[];
        }
      >;
      networks: Record<string, { internal?: boolean }>;
    };
    const obs = ['otel-collector', 'prometheus', 'grafana'];
    for (const name of obs) {
      const c = compose.services[name]!;
      assert.ok(c, name);
      assert.deepEqual(c.profiles, ['observability'], `${name} starts only with the profile`);
      assert.match(c.image ?? '', /^[a-z0-9./-]+:[A-Za-z0-9][\w.-]*$/, `${name} image has a tag`);
      assert.ok(!c.image!.endsWith(':latest'), `${name} image is pinned`);
      assert.equal(c.read_only, true, `${name} read_only`);
      assert.deepEqual(c.cap_drop, ['ALL'], `${name} cap_drop`);
      assert.ok(c.security_opt?.includes('no-new-privileges:true'), `${name} no-new-privileges`);
      assert.ok(!c.user || !/^(0|root)(:|$)/.test(c.user), `${name} is not root`);
      for (const v of c.volumes ?? []) {
        const src = v.split(':')[0]!;
        if (src.startsWith('./')) assert.ok(existsSync(join(deploy, src)), `${name} mounts ${src}, which exists`);
      }
      for (const p of c.ports ?? []) assert.match(p, /^127\.0\.0\.1:/, `${name} publishes on loopback only`);
    }
    const collector = compose.services['otel-collector']!;
    for (const s of SERVICES) {
      const c = compose.services[s]!;
      assert.equal(c.environment?.OTEL_EXPORTER_OTLP_ENDPOINT, '${OTEL_EXPORTER_OTLP_ENDPOINT:-}', `${s}: OTLP only when asked`);
      assert.ok(
        c.networks?.some((n) => collector.networks?.includes(n)),
        `${s} shares a network with the collector`,
      );
    }
    // The vault's network to the collector carries nothing else.
    const onVaultTelemetry = Object.keys(compose.services).filter((s) => compose.services[s]!.networks?.includes('vault-telemetry'));
    assert.deepEqual(onVaultTelemetry.sort(), ['otel-collector', 'vault']);
    for (const n of ['vault-telemetry', 'monitoring']) assert.equal(compose.networks[n]?.internal, true, `${n} is internal`);

    // The collector keeps the catalogue's names and turns the resource into the dashboards' labels.
    const otel = parse(readFileSync(join(deploy, 'observability', 'otel-collector.yaml'), 'utf8')) as any;
    assert.equal(otel.exporters.prometheus.add_metric_suffixes, false);
    assert.equal(otel.exporters.prometheus.resource_to_telemetry_conversion.enabled, true);
    assert.ok(otel.service.pipelines.metrics.exporters.includes('prometheus'));
    const prom = parse(readFileSync(join(deploy, 'observability', 'prometheus.yml'), 'utf8')) as any;
    const port = /:(\d+)$/.exec(otel.exporters.prometheus.endpoint)![1];
    assert.deepEqual(prom.scrape_configs[0].static_configs[0].targets, [`otel-collector:${port}`]);

    // Grafana: the provisioned data source is the compose Prometheus, the dashboards come from the mounted folder.
    const ds = parse(readFileSync(join(GRAFANA, 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8')) as any;
    assert.equal(ds.datasources[0].url, 'http://prometheus:9090');
    const provider = parse(readFileSync(join(GRAFANA, 'provisioning', 'dashboards', 'talon.yaml'), 'utf8')) as any;
    const mount = compose.services.grafana!.volumes!.find((v) => v.startsWith('./grafana/dashboards:'))!;
    assert.equal(mount.split(':')[1], provider.providers[0].options.path);
  });

  it('kubernetes: annotations, the PodMonitor and the NetworkPolicy point at each service’s internal port and /metrics', () => {
    const load = (f: string) =>
      parseAllDocuments(readFileSync(join(deploy, 'k8s', f), 'utf8')).map((d) => d.toJSON() as { kind: string; metadata: any; spec: any });
    const deployments = load('services.yaml').filter((d) => d.kind === 'Deployment');
    const [monitor] = load('monitoring.yaml').filter((d) => d.kind === 'PodMonitor');
    assert.ok(monitor, 'monitoring.yaml has a PodMonitor');
    assert.equal(monitor.metadata.namespace, 'talon', 'applied with kubectl apply -f, outside kustomize');
    const endpoint = monitor.spec.podMetricsEndpoints[0];
    assert.equal(endpoint.port, 'internal');
    assert.equal(endpoint.path, METRICS_PATH);
    for (const s of SERVICES) {
      const dep = deployments.find((d) => d.metadata.name === s)!;
      const tmpl = dep.spec.template;
      const internal = tmpl.spec.containers[0].ports.find((p: { name: string }) => p.name === 'internal');
      assert.equal(internal.containerPort, DEFAULT_PORTS.internal[s]);
      assert.deepEqual(
        tmpl.metadata.annotations,
        { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(internal.containerPort), 'prometheus.io/path': METRICS_PATH },
        `${s} pod annotations`,
      );
      for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels))
        assert.equal(tmpl.metadata.labels[k], v, `the PodMonitor selects ${s}'s pods`);
    }
    const policy = load('networkpolicies.yaml').find((d) => d.kind === 'NetworkPolicy' && d.metadata.name === 'metrics')!;
    assert.deepEqual(policy.spec.ingress[0].ports, [{ port: 'internal' }]);
    assert.deepEqual(policy.spec.podSelector.matchLabels, monitor.spec.selector.matchLabels);
    const kustomization = parse(readFileSync(join(deploy, 'k8s', 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    assert.ok(!kustomization.resources.includes('monitoring.yaml'), 'a cluster without the Prometheus Operator still applies the base');
  });
});
