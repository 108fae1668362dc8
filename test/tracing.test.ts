import { trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../src/config.js";
import { activeTraceparent, startTracing, tracingOn, tracingSettings } from "../src/tracing.js";

const ENDPOINT = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" };

describe("tracingSettings: the standard OTEL_* variables", () => {
  it("is off without an OTLP endpoint, whatever else is set", () => {
    expect(tracingSettings({})).toBeUndefined();
    expect(tracingSettings({ OTEL_SERVICE_NAME: "holdfast-eu" })).toBeUndefined();
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })).toBeUndefined();
  });

  it("is on with either endpoint variable, exporting http/protobuf unless told otherwise", () => {
    expect(tracingSettings(ENDPOINT)).toEqual({ protocol: "http/protobuf" });
    expect(
      tracingSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" }),
    ).toEqual({ protocol: "http/protobuf" });
    expect(tracingSettings({ ...ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" })).toEqual({
      protocol: "http/json",
    });
    // The traces-specific variable wins over the general one.
    expect(
      tracingSettings({
        ...ENDPOINT,
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
      }),
    ).toEqual({ protocol: "http/json" });
  });

  it("honours OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none", () => {
    expect(tracingSettings({ ...ENDPOINT, OTEL_SDK_DISABLED: "true" })).toBeUndefined();
    expect(tracingSettings({ ...ENDPOINT, OTEL_SDK_DISABLED: "TRUE" })).toBeUndefined();
    expect(tracingSettings({ ...ENDPOINT, OTEL_SDK_DISABLED: "false" })).toEqual({
      protocol: "http/protobuf",
    });
    expect(tracingSettings({ ...ENDPOINT, OTEL_TRACES_EXPORTER: "none" })).toBeUndefined();
  });

  it("refuses what it cannot honour, naming the variable", () => {
    expect(() => tracingSettings({ ...ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(
      ConfigError,
    );
    expect(() =>
      tracingSettings({ ...ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" }),
    ).toThrow(/OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" is not supported/);
    expect(() => tracingSettings({ ...ENDPOINT, OTEL_TRACES_EXPORTER: "zipkin" })).toThrow(
      /OTEL_TRACES_EXPORTER/,
    );
  });
});

describe("startTracing without settings", () => {
  it("starts nothing: the API stays the no-op one", async () => {
    const tracing = await startTracing(undefined);
    expect(tracingOn()).toBe(false);
    const span = trace.getTracer("t").startSpan("s");
    expect(span.isRecording()).toBe(false);
    expect(span.spanContext().traceId).toBe("00000000000000000000000000000000");
    expect(activeTraceparent()).toBeUndefined();
    await tracing.stop();
  });
});
