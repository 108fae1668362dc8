import { trace } from "@opentelemetry/api";
import { pino } from "pino";
import pretty from "pino-pretty";

/**
 * Logging with pino: one JSON object a line on stderr, so logs from several
 * instances can be merged and grepped; human-readable (pino-pretty) when
 * stderr is a terminal. Level is set once at start.
 *
 * A line written while a span is active (tracing on, see src/tracing.ts)
 * carries its `trace_id` and `span_id`: an RPC's line names its span.
 *
 * Secrets never reach a line: whatever a caller passes under these keys,
 * at the top or one level down, is replaced by "[redacted]".
 */
const REDACT = [
  "authorization",
  "apiKey",
  "key",
  "secret",
  "signingSecret",
  "attendee",
  "email",
  "phone",
];

/**
 * How `err` is logged: with its `cause` chain, and a ConnectError's details
 * as their message type names (each carries its protobuf descriptor:
 * kilobytes a line that say nothing an operator needs).
 */
export function serializeError(err: Error): pino.SerializedError {
  const e = pino.stdSerializers.errWithCause(err);
  const details = e.details as { desc?: { typeName?: string }; type?: string }[] | undefined;
  if (Array.isArray(details)) {
    e.details = details.map((d) => d?.desc?.typeName ?? d?.type ?? "unknown");
  }
  return e;
}

const options: pino.LoggerOptions = {
  level: "info",
  base: undefined,
  timestamp: pino.stdTimeFunctions.isoTime,
  messageKey: "msg",
  formatters: { level: (label) => ({ level: label }) },
  // `err` keeps its `cause` chain, each with its own stack.
  serializers: { err: serializeError },
  mixin() {
    // With tracing off no span is ever active: this is one lookup that finds nothing.
    const span = trace.getActiveSpan();
    if (!span) return {};
    const { traceId, spanId } = span.spanContext();
    return { trace_id: traceId, span_id: spanId };
  },
  redact: { paths: [...REDACT, ...REDACT.map((k) => `*.${k}`)], censor: "[redacted]" },
};

const logger = process.stderr.isTTY
  ? pino(options, pretty({ destination: 2, sync: true }))
  : pino(options, pino.destination({ dest: 2, sync: true }));

type Level = "debug" | "info" | "warn" | "error";

export function setLogLevel(level: Level): void {
  logger.level = level;
}

/** Whether a line at `level` would be written (to skip building its fields). */
export function logs(level: Level): boolean {
  return logger.isLevelEnabled(level);
}

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => logger.debug(fields ?? {}, msg),
  info: (msg: string, fields?: Record<string, unknown>) => logger.info(fields ?? {}, msg),
  warn: (msg: string, fields?: Record<string, unknown>) => logger.warn(fields ?? {}, msg),
  error: (msg: string, fields?: Record<string, unknown>) => logger.error(fields ?? {}, msg),
};
