// OpenTelemetry tracing: one provider per process, W3C context carried across
// NATS headers and gRPC metadata, OTLP/HTTP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
// Span attributes are scrubbed before export so a credential cannot leave in a span.
import {
  context,
  propagation,
  trace,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { createRequire } from 'node:module';
import { scrub } from './log.ts';

export { SpanKind, SpanStatusCode, context, trace, propagation };
export type { Span, Tracer, Context, Attributes };

/** Wraps an exporter so every string attribute and event is scrubbed of credential shapes. */
class ScrubbingExporter implements SpanExporter {
  private readonly inner: SpanExporter;
  constructor(inner: SpanExporter) {
    this.inner = inner;
  }
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    for (const s of spans) {
      const attrs = s.attributes as Record<string, unknown>;
      for (const [k, v] of Object.entries(attrs)) if (typeof v === 'string') attrs[k] = scrub(v);
      for (const ev of s.events) {
        const ea = (ev.attributes ?? {}) as Record<string, unknown>;
        for (const [k, v] of Object.entries(ea)) if (typeof v === 'string') ea[k] = scrub(v);
      }
    }
    this.inner.export(spans, done);
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

export interface Telemetry {
  readonly tracer: Tracer;
  /** Flushes pending spans and stops the exporter. */
  shutdown(): Promise<void>;
}

let installed: Telemetry | undefined;

export function initTelemetry(service: string, env: Record<string, string | undefined> = process.env): Telemetry {
  if (installed) return installed;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  const processors: SpanProcessor[] = [];
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (endpoint && endpoint.trim() !== '') {
    // The exporter reads OTEL_EXPORTER_OTLP_* itself (endpoint, headers, timeout). Loaded only
    // when an endpoint is set: it and its protobuf encoders are ≈8 MiB resident per process
    // (docs/architecture.md §11).
    const { OTLPTraceExporter }: typeof import('@opentelemetry/exporter-trace-otlp-http') = createRequire(import.meta.url)(
      '@opentelemetry/exporter-trace-otlp-http',
    );
    processors.push(
      new BatchSpanProcessor({
        exporter: new ScrubbingExporter(new OTLPTraceExporter()),
        scheduledDelayMillis: Number(env.OTEL_BSP_SCHEDULE_DELAY ?? 1000),
      }),
    );
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME ?? service,
      'service.namespace': 'talon',
      'service.instance.id': `${process.pid}`,
    }),
    spanProcessors: processors,
  });
  trace.setGlobalTracerProvider(provider);
  installed = {
    tracer: trace.getTracer(`talon.${service}`),
    async shutdown() {
      await provider.forceFlush().catch(() => undefined);
      await provider.shutdown().catch(() => undefined);
    },
  };
  return installed;
}

export function tracer(): Tracer {
  return installed?.tracer ?? trace.getTracer('talon');
}

/** Runs fn inside a new active span; records errors and ends the span. */
export async function withSpan<T>(
  name: string,
  opts: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = opts.parent ?? context.active();
  const span = tracer().startSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes: opts.attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    span.recordException({ name: (err as Error).name, message: scrub(String((err as Error).message)) });
    span.setStatus({ code: SpanStatusCode.ERROR, message: scrub(String((err as Error).message)) });
    throw err;
  } finally {
    span.end();
  }
}

/** Minimal header container shape shared by nats.js MsgHdrs. */
export interface HeaderBag {
  get(k: string): string;
  set(k: string, v: string): void;
  keys(): string[];
}

const bagSetter: TextMapSetter<HeaderBag> = { set: (c, k, v) => c.set(k, v) };
const bagGetter: TextMapGetter<HeaderBag | undefined> = {
  get: (c, k) => {
    const v = c?.get(k);
    return v === undefined || v === '' ? undefined : v;
  },
  keys: (c) => c?.keys() ?? [],
};

export function injectHeaders(bag: HeaderBag, ctx: Context = context.active()): void {
  propagation.inject(ctx, bag, bagSetter);
}

export function extractHeaders(bag: HeaderBag | undefined): Context {
  return propagation.extract(context.active(), bag, bagGetter);
}

/** Record-shaped carrier (HTTP headers, gRPC metadata maps). */
export function injectRecord(rec: Record<string, string>, ctx: Context = context.active()): void {
  propagation.inject(ctx, rec);
}

export function extractRecord(rec: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(context.active(), rec, {
    get: (c, k) => {
      const v = c[k];
      return Array.isArray(v) ? v[0] : v;
    },
    keys: (c) => Object.keys(c),
  });
}
