import { createServer, type Server } from "node:http";
import { BinaryReader, type WireType } from "@bufbuild/protobuf/wire";

/** A span as an OTLP receiver got it, flattened for assertions. */
export type ReceivedSpan = {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  /** The instrumentation scope's name. */
  scope: string;
  attributes: Record<string, string | number | boolean>;
  /** OTLP's StatusCode: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  resource: Record<string, string | number | boolean>;
};

type Value = string | number | boolean;

/**
 * An OTLP/HTTP trace receiver on loopback, as a collector would be: it
 * accepts `POST /v1/traces` in both encodings the exporter speaks,
 * http/protobuf (decoded here with protobuf-es's wire reader, field by
 * field of opentelemetry-proto's ExportTraceServiceRequest) and http/json.
 */
export async function otlpReceiver() {
  const spans: ReceivedSpan[] = [];
  const requests: { path: string; contentType: string }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const contentType = req.headers["content-type"] ?? "";
      requests.push({ path: req.url ?? "", contentType });
      if (contentType.startsWith("application/json")) {
        spans.push(...fromJson(JSON.parse(body.toString()) as JsonRequest));
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      } else {
        spans.push(...fromProtobuf(new BinaryReader(body)));
        // An empty ExportTraceServiceResponse: everything accepted.
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    spans,
    requests,
    url: `http://127.0.0.1:${port}`,
    /** Waits until `predicate` holds for the spans received (or `timeoutMs`). */
    async waitFor(predicate: (s: ReceivedSpan[]) => boolean, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(spans) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      return spans;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Reads the length-delimited message at the reader's position with `read`, field by field. */
function message(r: BinaryReader, read: (field: number, wire: WireType, r: BinaryReader) => void) {
  const end = r.pos + r.uint32();
  while (r.pos < end) {
    const [field, wire] = r.tag();
    read(field, wire, r);
  }
}

function fromProtobuf(r: BinaryReader): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field !== 1) {
      r.skip(wire);
      continue;
    }
    // ResourceSpans
    const resource: Record<string, Value> = {};
    const found: ReceivedSpan[] = [];
    message(r, (f, w, r) => {
      if (f === 1) {
        // Resource
        message(r, (f, w, r) => (f === 1 ? keyValue(r, resource) : r.skip(w)));
      } else if (f === 2) {
        // ScopeSpans
        let scope = "";
        const inScope: ReceivedSpan[] = [];
        message(r, (f, w, r) => {
          if (f === 1) {
            message(r, (f, w, r) => {
              if (f === 1) scope = r.string();
              else r.skip(w);
            });
          } else if (f === 2) inScope.push(span(r, resource));
          else r.skip(w);
        });
        for (const s of inScope) found.push({ ...s, scope });
      } else r.skip(w);
    });
    out.push(...found);
  }
  return out;
}

function span(r: BinaryReader, resource: Record<string, Value>): ReceivedSpan {
  const s: ReceivedSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: "",
    name: "",
    kind: 0,
    scope: "",
    attributes: {},
    statusCode: 0,
    resource,
  };
  message(r, (f, w, r) => {
    if (f === 1) s.traceId = hex(r.bytes());
    else if (f === 2) s.spanId = hex(r.bytes());
    else if (f === 4) s.parentSpanId = hex(r.bytes());
    else if (f === 5) s.name = r.string();
    else if (f === 6) s.kind = r.int32();
    else if (f === 9) keyValue(r, s.attributes);
    else if (f === 15) {
      message(r, (f, w, r) => {
        if (f === 3) s.statusCode = r.int32();
        else r.skip(w);
      });
    } else r.skip(w);
  });
  return s;
}

/** A KeyValue with a scalar AnyValue (string, bool, int or double) into `into`. */
function keyValue(r: BinaryReader, into: Record<string, Value>) {
  let key = "";
  let value: Value = "";
  message(r, (f, w, r) => {
    if (f === 1) key = r.string();
    else if (f === 2) {
      message(r, (f, w, r) => {
        if (f === 1) value = r.string();
        else if (f === 2) value = r.bool();
        else if (f === 3) value = Number(r.int64());
        else if (f === 4) value = r.double();
        else r.skip(w);
      });
    } else r.skip(w);
  });
  into[key] = value;
}

type JsonKeyValue = {
  key: string;
  value: {
    stringValue?: string;
    boolValue?: boolean;
    intValue?: string | number;
    doubleValue?: number;
  };
};
type JsonRequest = {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: {
      scope?: { name?: string };
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind?: number;
        attributes?: JsonKeyValue[];
        status?: { code?: number };
      }[];
    }[];
  }[];
};

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, Value> {
  const out: Record<string, Value> = {};
  for (const { key, value } of list ?? []) {
    out[key] =
      value.stringValue ??
      value.boolValue ??
      (value.intValue !== undefined ? Number(value.intValue) : (value.doubleValue ?? ""));
  }
  return out;
}

function fromJson(req: JsonRequest): ReceivedSpan[] {
  return (req.resourceSpans ?? []).flatMap((rs) => {
    const resource = jsonAttributes(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((s) => ({
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId ?? "",
        name: s.name,
        kind: s.kind ?? 0,
        scope: ss.scope?.name ?? "",
        attributes: jsonAttributes(s.attributes),
        statusCode: s.status?.code ?? 0,
        resource,
      })),
    );
  });
}
