import { createRequire } from "node:module";
import {
  type Context,
  context,
  DiagLogLevel,
  diag,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  trace,
} from "@opentelemetry/api";
import { ConfigError } from "./config.js";
import { clipText } from "./domain/rejection.js";
import { log } from "./log.js";

/**
 * OpenTelemetry tracing, in one place. It is on only when an OTLP endpoint
 * is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) and OTEL_SDK_DISABLED is not true.
 * Off, no SDK is loaded: every span below comes from the API's no-op
 * tracer, no trace context is read or written, and the RPC interceptor is
 * not installed (see src/server.ts).
 *
 * Where spans start (docs/operations.md, Tracing): one SERVER span per RPC
 * (src/rpc/tracing.ts), continuing the caller's W3C traceparent; Postgres
 * queries under it (instrumentation-pg, only inside a span: background
 * polling makes none); one CLIENT span per webhook attempt
 * (src/events/webhooks.ts), whose parent is the call whose transaction
 * wrote the event: its traceparent is stored with the outbox row
 * (src/db/trace-context.ts) and sent on to the receiver.
 */

export const TRACER_NAME = "holdfast";

/** The OTLP encoding to export with. */
export type TracingSettings = { protocol: "http/protobuf" | "http/json" };

const truthy = (v: string | undefined) => v?.trim().toLowerCase() === "true";
const given = (v: string | undefined) => v !== undefined && v.trim() !== "";

/**
 * Whether, and how, to trace, from the standard OTEL_* variables; undefined
 * when tracing is off. Throws ConfigError for a setting this build cannot
 * honour (OTLP over gRPC), rather than silently exporting nothing.
 */
export function tracingSettings(env: NodeJS.ProcessEnv = process.env): TracingSettings | undefined {
  if (truthy(env.OTEL_SDK_DISABLED)) return undefined;
  if (!given(env.OTEL_EXPORTER_OTLP_ENDPOINT) && !given(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)) {
    return undefined;
  }
  const exporter = env.OTEL_TRACES_EXPORTER?.trim() || "otlp";
  if (exporter === "none") return undefined;
  if (exporter !== "otlp") {
    throw new ConfigError(
      `invalid configuration:\n  OTEL_TRACES_EXPORTER: "${exporter}" is not supported: use otlp or none`,
    );
  }
  const [name, value] = given(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)
    ? ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL]
    : ["OTEL_EXPORTER_OTLP_PROTOCOL", env.OTEL_EXPORTER_OTLP_PROTOCOL];
  const protocol = value?.trim() || "http/protobuf";
  if (protocol !== "http/protobuf" && protocol !== "http/json") {
    throw new ConfigError(
      `invalid configuration:\n  ${name}: "${protocol}" is not supported: use http/protobuf (the collector's port 4318) or http/json`,
    );
  }
  return { protocol };
}

let started = false;

/** Whether this process started the SDK (and so traces its calls). */
export function tracingOn(): boolean {
  return started;
}

export type Tracing = {
  /** Ends the SDK, exporting the spans still buffered. */
  stop(): Promise<void>;
};

/**
 * Starts the SDK when `settings` say so: a tracer provider exporting over
 * OTLP in batches, the W3C trace-context propagator, and the pg
 * instrumentation. Call it before anything loads `pg`.
 *
 * `pg` is CommonJS; whether an ESM `import` of it passes through the
 * require hook the instrumentation patches modules with depends on the
 * loader (under tsx it does). So it is required here, once, through that
 * hook: the ESM imports that follow get the same, patched, module from
 * Node's cache, whatever the loader.
 *
 * The SDK's own complaints (an export the collector refused or never
 * answered) are logged as warnings: spans lost are otherwise silent.
 */
export async function startTracing(settings: TracingSettings | undefined): Promise<Tracing> {
  if (!settings || started) return { stop: async () => {} };
  const [
    { W3CTraceContextPropagator },
    { NodeTracerProvider, BatchSpanProcessor },
    { defaultResource, detectResources, envDetector, resourceFromAttributes },
    { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION },
    { registerInstrumentations },
    { PgInstrumentation },
  ] = await Promise.all([
    import("@opentelemetry/core"),
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/semantic-conventions"),
    import("@opentelemetry/instrumentation"),
    import("@opentelemetry/instrumentation-pg"),
  ]);
  const { OTLPTraceExporter } =
    settings.protocol === "http/json"
      ? await import("@opentelemetry/exporter-trace-otlp-http")
      : await import("@opentelemetry/exporter-trace-otlp-proto");
  const require = createRequire(import.meta.url);
  const version = (require("../package.json") as { version: string }).version;
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (envDetector) win over ours.
  const resource = defaultResource()
    .merge(
      resourceFromAttributes({ [ATTR_SERVICE_NAME]: "holdfast", [ATTR_SERVICE_VERSION]: version }),
    )
    .merge(detectResources({ detectors: [envDetector] }));
  // The exporter reads its endpoint, headers, timeout and compression from
  // the OTEL_EXPORTER_OTLP_* variables; the sampler (OTEL_TRACES_SAMPLER)
  // and the batching (OTEL_BSP_*) are read from theirs.
  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  // An export runs on a timer that may have started inside a call: its
  // failure is logged outside any span (not with that call's trace id), and
  // clipped, as a collector's answer echoed in it is the collector's text.
  const report = (message: string, args: unknown[]) =>
    context.with(ROOT_CONTEXT, () =>
      log.warn(`tracing: ${clipText(message, 500)}`, {
        detail: args.map((a) => clipText(String(a), 500)),
      }),
    );
  diag.setLogger(
    {
      error: (message, ...args) => report(message, args),
      warn: (message, ...args) => report(message, args),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  );
  provider.register({ propagator: new W3CTraceContextPropagator() });
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new PgInstrumentation({
        // A query outside any span (the sweeper, webhook polling, health
        // checks) would be a trace of its own every few hundred ms.
        requireParentSpan: true,
        // Never the values: they hold attendees' contact data.
        enhancedDatabaseReporting: false,
      }),
    ],
  });
  require("pg");
  started = true;
  return {
    async stop() {
      // A collector that is down must not fail the stop.
      await provider
        .shutdown()
        .catch((err: unknown) => log.warn("tracing: spans left unexported at stop", { err }));
      started = false;
    },
  };
}

/** The W3C traceparent of the span active now, or undefined (no span, or tracing off). */
export function activeTraceparent(): string | undefined {
  const carrier: { traceparent?: string } = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** The context a stored traceparent names, to continue its trace; the root context without one. */
export function contextOfTraceparent(traceparent: string | null | undefined): Context {
  if (!traceparent) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, { traceparent });
}

/** Runs `work` in a new span, active while it runs, ended when it settles. */
export function inSpan<T>(
  name: string,
  options: SpanOptions,
  parent: Context,
  work: (span: Span) => Promise<T>,
): Promise<T> {
  return trace
    .getTracer(TRACER_NAME)
    .startActiveSpan(name, options, parent, (span) => work(span).finally(() => span.end()));
}
