// Metrics: one OpenTelemetry MeterProvider per process, read two ways — pulled as
// Prometheus text on the internal HTTP port (`GET /metrics`, internal-http.ts) and,
// when OTEL_EXPORTER_OTLP_ENDPOINT is set, pushed as OTLP/HTTP every
// OTEL_METRIC_EXPORT_INTERVAL ms. `TALON_METRICS=off` leaves every instrument a no-op.
//
// Every metric is declared once, in METRICS below (name, kind, unit, label keys, the
// service that exports it): services import their definitions from here, and the
// dashboards and tests list them from here. Label values come from closed sets only
// (route templates, codes, config values): never a user text, token, id or secret.
//
// Instruments may be created at module load, before initMetrics(): each one resolves
// its SDK instrument on first use after the provider is installed (a generation check
// per call), so a service module can hold its counters in constants.
//
// A scrape collects and serialises; it logs nothing and creates no spans. Gauges that
// cost a round trip (JetStream consumer info) are read in their observable callback,
// i.e. only when somebody scrapes, and cached (cachedReading).
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  createNoopMeter,
  type Attributes,
  type Counter as OtelCounter,
  type Histogram as OtelHistogram,
  type Meter,
  type ObservableResult,
} from '@opentelemetry/api';
import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, MetricReader, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';

import { METRICS_PATH } from './internal-http.ts';

export { METRICS_PATH };
/** The Prometheus text exposition format this module writes. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricKind = 'counter' | 'histogram' | 'gauge';
/** Which process exports a metric: a service name, or `all` (process and runtime metrics). */
export type MetricOwner = 'gateway' | 'orchestrator' | 'memory' | 'vault' | 'sandbox' | 'egress' | 'all';

export interface MetricDef<K extends MetricKind = MetricKind, L extends string = string> {
  /** The Prometheus name, exactly as scraped (counters end in `_total`, units are in the name). */
  readonly name: string;
  readonly kind: K;
  readonly help: string;
  /** UCUM unit for OTLP (`s`, `By`, `1`, `{request}`). */
  readonly unit: string;
  /** Label keys; every value comes from a closed set. */
  readonly labels: readonly L[];
  readonly owner: MetricOwner;
  /** Histogram bucket upper bounds (seconds). */
  readonly buckets?: readonly number[];
}

function def<const K extends MetricKind, const L extends string = never>(d: MetricDef<K, L>): MetricDef<K, L> {
  return Object.freeze(d);
}

/** Request/turn latency buckets (seconds): tens of milliseconds to minutes. */
const SLOW_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300] as const;
/** Query latency buckets (seconds): a millisecond to a few seconds. */
const FAST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

/** Every metric Talon exports: the one catalogue (docs/architecture.md, "Metrics"). */
export const METRICS = {
  gatewayRequests: def({
    name: 'talon_gateway_requests_total',
    kind: 'counter',
    help: 'HTTP requests the gateway answered, by route template and status code.',
    unit: '{request}',
    labels: ['route', 'status'],
    owner: 'gateway',
  }),
  gatewayAuthFailures: def({
    name: 'talon_gateway_auth_failures_total',
    kind: 'counter',
    help: 'Failed authentications at the gateway (API tokens, webhook signatures), by reason.',
    unit: '{failure}',
    labels: ['reason'],
    owner: 'gateway',
  }),
  gatewayRateLimited: def({
    name: 'talon_gateway_rate_limited_total',
    kind: 'counter',
    help: 'Requests the gateway refused with 429, by the limit that was hit.',
    unit: '{request}',
    labels: ['scope'],
    owner: 'gateway',
  }),
  turns: def({
    name: 'talon_turns_total',
    kind: 'counter',
    help: 'Deliveries of inbound messages the orchestrator finished handling, by outcome.',
    unit: '{turn}',
    labels: ['outcome'],
    owner: 'orchestrator',
  }),
  turnDuration: def({
    name: 'talon_turn_duration_seconds',
    kind: 'histogram',
    help: 'Time the orchestrator spent on one delivery of an inbound message, from receipt to ack (or retry, parking).',
    unit: 's',
    labels: [],
    owner: 'orchestrator',
    buckets: SLOW_BUCKETS,
  }),
  llmRequests: def({
    name: 'talon_llm_requests_total',
    kind: 'counter',
    help: 'LLM API calls, by provider, configured model and outcome.',
    unit: '{request}',
    labels: ['provider', 'model', 'outcome'],
    owner: 'orchestrator',
  }),
  llmTokens: def({
    name: 'talon_llm_tokens_total',
    kind: 'counter',
    help: 'Tokens the LLM provider reported, by provider, configured model and direction (input, output).',
    unit: '{token}',
    labels: ['provider', 'model', 'direction'],
    owner: 'orchestrator',
  }),
  llmRequestDuration: def({
    name: 'talon_llm_request_duration_seconds',
    kind: 'histogram',
    help: 'Duration of LLM API calls (to the last streamed byte), by provider and configured model.',
    unit: 's',
    labels: ['provider', 'model'],
    owner: 'orchestrator',
    buckets: SLOW_BUCKETS,
  }),
  egressDecisions: def({
    name: 'talon_egress_decisions_total',
    kind: 'counter',
    help: 'Egress decisions, by kind of caller (service, skill, other, none), decision (allow, deny) and reason code.',
    unit: '{decision}',
    labels: ['principal_kind', 'decision', 'reason'],
    owner: 'egress',
  }),
  egressLeaksBlocked: def({
    name: 'talon_egress_leaks_blocked_total',
    kind: 'counter',
    help: 'Requests egress refused because the leak scanner found a credential, by scanner rule (vault_secret for a vault value).',
    unit: '{request}',
    labels: ['rule'],
    owner: 'egress',
  }),
  vaultResolves: def({
    name: 'talon_vault_resolves_total',
    kind: 'counter',
    help: 'Secret resolve requests to the vault, by outcome (released, or the refusal code).',
    unit: '{request}',
    labels: ['outcome'],
    owner: 'vault',
  }),
  vaultSealed: def({
    name: 'talon_vault_sealed',
    kind: 'gauge',
    help: '1 while the vault is sealed, 0 while unsealed.',
    unit: '1',
    labels: [],
    owner: 'vault',
  }),
  sandboxInvocations: def({
    name: 'talon_sandbox_invocations_total',
    kind: 'counter',
    help: 'Skill invocations the sandbox answered, by outcome (ok, or the error code: timeout, memory_limit, trap, ...).',
    unit: '{invocation}',
    labels: ['outcome'],
    owner: 'sandbox',
  }),
  sandboxInvocationDuration: def({
    name: 'talon_sandbox_invocation_duration_seconds',
    kind: 'histogram',
    help: 'Duration of skill invocations in the sandbox.',
    unit: 's',
    labels: [],
    owner: 'sandbox',
    buckets: FAST_BUCKETS,
  }),
  sandboxHosts: def({
    name: 'talon_sandbox_hosts',
    kind: 'gauge',
    help: 'Plugin host processes of this sandbox node.',
    unit: '{process}',
    labels: [],
    owner: 'sandbox',
  }),
  memorySearchDuration: def({
    name: 'talon_memory_search_duration_seconds',
    kind: 'histogram',
    help: "Duration of memory searches in the database (method: search for the Search RPC, recall for a turn's recall), embedding excluded.",
    unit: 's',
    labels: ['method'],
    owner: 'memory',
    buckets: FAST_BUCKETS,
  }),
  jetstreamConsumerPending: def({
    name: 'talon_jetstream_consumer_pending',
    kind: 'gauge',
    help: 'Messages in the stream not yet delivered to the consumer (backlog); read at scrape, cached 5 s; every replica reports the shared consumer.',
    unit: '{message}',
    labels: ['stream', 'consumer'],
    owner: 'all',
  }),
  jetstreamConsumerAckPending: def({
    name: 'talon_jetstream_consumer_ack_pending',
    kind: 'gauge',
    help: 'Messages delivered to the consumer and not yet acknowledged.',
    unit: '{message}',
    labels: ['stream', 'consumer'],
    owner: 'all',
  }),
  jetstreamConsumerRedelivered: def({
    name: 'talon_jetstream_consumer_redelivered',
    kind: 'gauge',
    help: 'Messages delivered to the consumer more than once and not yet acknowledged.',
    unit: '{message}',
    labels: ['stream', 'consumer'],
    owner: 'all',
  }),
  processCpu: def({
    name: 'process_cpu_seconds_total',
    kind: 'counter',
    help: 'User and system CPU time of the process.',
    unit: 's',
    labels: [],
    owner: 'all',
  }),
  processResidentMemory: def({
    name: 'process_resident_memory_bytes',
    kind: 'gauge',
    help: 'Resident set size of the process.',
    unit: 'By',
    labels: [],
    owner: 'all',
  }),
  processStartTime: def({
    name: 'process_start_time_seconds',
    kind: 'gauge',
    help: 'Start time of the process, in seconds since the Unix epoch.',
    unit: 's',
    labels: [],
    owner: 'all',
  }),
  nodeHeapUsed: def({
    name: 'nodejs_heap_size_used_bytes',
    kind: 'gauge',
    help: 'V8 heap in use.',
    unit: 'By',
    labels: [],
    owner: 'all',
  }),
  nodeHeapTotal: def({
    name: 'nodejs_heap_size_total_bytes',
    kind: 'gauge',
    help: 'V8 heap allocated.',
    unit: 'By',
    labels: [],
    owner: 'all',
  }),
  nodeEventLoopLag: def({
    name: 'nodejs_eventloop_lag_seconds',
    kind: 'gauge',
    help: 'Delay of a callback scheduled at scrape time (how busy the event loop is).',
    unit: 's',
    labels: [],
    owner: 'all',
  }),
} as const;

export type MetricName = (typeof METRICS)[keyof typeof METRICS]['name'];

/** Label values by key. */
export type Labels<L extends string> = { readonly [K in L]: string };

const SAFE_LABEL = /^[A-Za-z0-9_.:/@-]{1,64}$/;

/**
 * A label value from a code-like string (an error code, a reason): kept when it looks
 * like a code, `other` when it does not — so a stray message can never become a series.
 */
export function codeLabel(value: string | undefined): string {
  if (value === undefined || value === '') return 'none';
  return SAFE_LABEL.test(value) ? value : 'other';
}

// ---- the process's meter ---------------------------------------------------------

interface MeterState {
  meter: Meter;
  /** Moves on every (re)initialisation; instruments re-resolve when it changed. */
  generation: number;
}

const NOOP_METER = createNoopMeter();
const state: MeterState = { meter: NOOP_METER, generation: 0 };

type Observe<L extends string> = (value: number, labels?: Labels<L>) => void;
type GaugeCallback<L extends string> = (observe: Observe<L>) => void | Promise<void>;
const observers: Array<{ def: MetricDef; callback: GaugeCallback<string> }> = [];

export class Counter<L extends string> {
  readonly def: MetricDef<'counter', L>;
  private inst: OtelCounter | undefined;
  private generation = -1;
  constructor(d: MetricDef<'counter', L>) {
    this.def = d;
  }
  add(labels: Labels<L>, n = 1): void {
    if (this.generation !== state.generation) {
      this.inst = state.meter.createCounter(this.def.name, { description: this.def.help, unit: this.def.unit });
      this.generation = state.generation;
    }
    this.inst!.add(n, labels as Attributes);
  }
}

export class Histogram<L extends string> {
  readonly def: MetricDef<'histogram', L>;
  private inst: OtelHistogram | undefined;
  private generation = -1;
  constructor(d: MetricDef<'histogram', L>) {
    this.def = d;
  }
  /** Records one value (seconds for the `_seconds` histograms). */
  record(value: number, labels: Labels<L>): void {
    if (this.generation !== state.generation) {
      this.inst = state.meter.createHistogram(this.def.name, {
        description: this.def.help,
        unit: this.def.unit,
        ...(this.def.buckets ? { advice: { explicitBucketBoundaries: [...this.def.buckets] } } : {}),
      });
      this.generation = state.generation;
    }
    this.inst!.record(value, labels as Attributes);
  }
  /** Starts a timer; calling the result records the seconds elapsed. */
  startTimer(): (labels: Labels<L>) => void {
    const t0 = performance.now();
    return (labels) => this.record((performance.now() - t0) / 1000, labels);
  }
}

export function counter<L extends string>(d: MetricDef<'counter', L>): Counter<L> {
  return new Counter(d);
}

export function histogram<L extends string>(d: MetricDef<'histogram', L>): Histogram<L> {
  return new Histogram(d);
}

function register(meter: Meter, d: MetricDef, callback: GaugeCallback<string>): void {
  const opts = { description: d.help, unit: d.unit };
  const inst = d.kind === 'counter' ? meter.createObservableCounter(d.name, opts) : meter.createObservableGauge(d.name, opts);
  inst.addCallback(async (result: ObservableResult) => {
    await callback((value, labels) => result.observe(value, labels as Attributes | undefined));
  });
}

/**
 * A value read when the metrics are collected (a scrape or an OTLP export), never
 * otherwise: a gauge, or an observable counter (a total kept elsewhere). The callback
 * may be async; it must not log or create spans.
 */
export function observe<L extends string>(d: MetricDef<'gauge' | 'counter', L>, callback: GaugeCallback<L>): void {
  const cb = callback as GaugeCallback<string>;
  observers.push({ def: d, callback: cb });
  if (state.meter !== NOOP_METER) register(state.meter, d, cb);
}

/**
 * Wraps an async reading so it runs at most once per `maxAgeMs` however often the
 * metrics are scraped, and never runs at all while nobody scrapes. A failed reading
 * yields undefined (the series is left out of that scrape) and is retried on the
 * next scrape after `maxAgeMs`.
 */
export function cachedReading<T>(read: () => Promise<T>, maxAgeMs = 5_000, now: () => number = Date.now): () => Promise<T | undefined> {
  let at = -Infinity;
  let value: T | undefined;
  let pending: Promise<T | undefined> | undefined;
  return () => {
    if (now() - at < maxAgeMs) return Promise.resolve(value);
    pending ??= read().then(
      (v) => {
        value = v;
        at = now();
        pending = undefined;
        return v;
      },
      () => {
        value = undefined;
        at = now();
        pending = undefined;
        return undefined;
      },
    );
    return pending;
  };
}

/** What a JetStream consumer info says (the fields the gauges read). */
export interface ConsumerReading {
  num_pending: number;
  num_ack_pending: number;
  num_redelivered: number;
}

/**
 * The backlog gauges of one durable consumer, read at scrape through `info` (the
 * caller's JetStreamManager.consumers.info), at most every 5 s.
 */
export function observeConsumer(stream: string, consumer: string, info: () => Promise<ConsumerReading>): void {
  const read = cachedReading(info);
  const labels = { stream, consumer };
  observe(METRICS.jetstreamConsumerPending, async (o) => {
    const r = await read();
    if (r) o(r.num_pending, labels);
  });
  observe(METRICS.jetstreamConsumerAckPending, async (o) => {
    const r = await read();
    if (r) o(r.num_ack_pending, labels);
  });
  observe(METRICS.jetstreamConsumerRedelivered, async (o) => {
    const r = await read();
    if (r) o(r.num_redelivered, labels);
  });
}

/** Process and Node runtime metrics, read at scrape. */
function observeProcess(): void {
  const started = Date.now() / 1000 - process.uptime();
  observe(METRICS.processCpu, (o) => {
    const u = process.cpuUsage();
    o((u.user + u.system) / 1e6);
  });
  observe(METRICS.processResidentMemory, (o) => o(process.memoryUsage.rss()));
  observe(METRICS.processStartTime, (o) => o(Math.round(started * 1000) / 1000));
  observe(METRICS.nodeHeapUsed, (o) => o(process.memoryUsage().heapUsed));
  observe(METRICS.nodeHeapTotal, (o) => o(process.memoryUsage().heapTotal));
  // Measured only when collected (no timer while idle): how late a callback queued now runs.
  observe(METRICS.nodeEventLoopLag, async (o) => {
    const t0 = performance.now();
    await new Promise<void>((resolve) => setImmediate(resolve));
    o((performance.now() - t0) / 1000);
  });
}

// ---- installation and exposition --------------------------------------------------

export interface MetricsOptions {
  /** False: every instrument stays a no-op and /metrics says so (TALON_METRICS=off). */
  enabled: boolean;
  /** OTEL_* variables (the OTLP exporter reads the rest of them itself). */
  env?: Record<string, string | undefined>;
}

export interface Metrics {
  readonly enabled: boolean;
  /** The Prometheus text of every metric of this process. */
  render(): Promise<string>;
  /** The `/metrics` route of the internal HTTP port. */
  route(): Promise<{ status: number; headers: Record<string, string>; body: string }>;
  /** Exports pending OTLP data and stops. */
  shutdown(): Promise<void>;
}

/** A pull reader: collects when asked (a scrape), nothing in between. */
class PullReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

/** `host/pid`: unique per process across machines and restarts. */
export function instanceId(): string {
  return `${hostname()}/${process.pid}`;
}

const OFF_BODY = '# metrics are off in this process (TALON_METRICS=off)\n';

function textResponse(status: number, body: string) {
  return {
    status,
    headers: { 'content-type': PROMETHEUS_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' },
    body,
  };
}

let installed: Metrics | undefined;

/**
 * Installs the process's meter provider for `service`: a pull reader for /metrics,
 * plus an OTLP/HTTP push reader when OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT is set.
 * Every series carries `service_name` and `service_instance_id` labels (from the
 * resource), and `target_info` carries the whole resource.
 */
export function initMetrics(service: string, opts: MetricsOptions): Metrics {
  if (installed) return installed;
  const env = opts.env ?? process.env;
  if (!opts.enabled) {
    installed = {
      enabled: false,
      render: () => Promise.resolve(OFF_BODY),
      route: () => Promise.resolve(textResponse(200, OFF_BODY)),
      shutdown: () => Promise.resolve(),
    };
    return installed;
  }
  const pull = new PullReader();
  const readers: IMetricReader[] = [pull];
  const endpoint = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (endpoint && endpoint.trim() !== '') {
    // The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout); loaded only
    // when an endpoint is set, like the trace exporter (telemetry.ts).
    const { OTLPMetricExporter }: typeof import('@opentelemetry/exporter-metrics-otlp-http') = createRequire(import.meta.url)(
      '@opentelemetry/exporter-metrics-otlp-http',
    );
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter(),
        exportIntervalMillis: Number(env.OTEL_METRIC_EXPORT_INTERVAL ?? 60_000),
      }),
    );
  }
  const provider = new MeterProvider({
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME ?? service,
      'service.namespace': 'talon',
      'service.instance.id': instanceId(),
    }),
    readers,
  });
  state.meter = provider.getMeter('talon');
  state.generation += 1;
  observeProcess();
  for (const o of observers) if (!isProcessMetric(o.def)) register(state.meter, o.def, o.callback);
  // service_name and service_instance_id on every series; no otel_scope_* labels (one scope).
  const serializer = new PrometheusSerializer(undefined, false, /^service\.(name|instance\.id)$/, false, true);
  const render = async (): Promise<string> => {
    const { resourceMetrics } = await pull.collect({ timeoutMillis: 5_000 });
    // `# UNIT` is OpenMetrics, not the 0.0.4 text format served here; the unit is in every name.
    const text = serializer.serialize(resourceMetrics).replace(/^# UNIT .*\n/gm, '');
    return text + declaredOnly(text, service);
  };
  installed = {
    enabled: true,
    render,
    route: async () => textResponse(200, await render()),
    async shutdown() {
      await provider.forceFlush().catch(() => undefined);
      await provider.shutdown().catch(() => undefined);
    },
  };
  return installed;
}

/**
 * HELP and TYPE of the metrics this service owns that have no sample yet (a counter
 * before its first event), so every scrape lists the service's whole catalogue.
 */
function declaredOnly(text: string, service: string): string {
  let out = '';
  for (const d of Object.values(METRICS) as MetricDef[]) {
    if (d.owner !== service || text.includes(`# TYPE ${d.name} `)) continue;
    out += `# HELP ${d.name} ${d.help}\n# TYPE ${d.name} ${d.kind}\n`;
  }
  return out;
}

const PROCESS_METRICS: ReadonlySet<MetricDef> = new Set<MetricDef>([
  METRICS.processCpu,
  METRICS.processResidentMemory,
  METRICS.processStartTime,
  METRICS.nodeHeapUsed,
  METRICS.nodeHeapTotal,
  METRICS.nodeEventLoopLag,
]);

function isProcessMetric(d: MetricDef): boolean {
  return PROCESS_METRICS.has(d);
}

/** Tests only: forget the installed provider so the next initMetrics starts afresh. */
export function resetMetricsForTests(): void {
  installed = undefined;
  state.meter = NOOP_METER;
  state.generation += 1;
  observers.length = 0;
}
