import { randomUUID } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";
import { clipText } from "../domain/rejection.js";
import { log, logs } from "../log.js";
import { callerIn } from "./auth.js";
import type { NodeRequest, NodeResponse } from "./http.js";
import {
  callSite,
  codeOf,
  observing,
  protocolOf,
  reasonOf,
  requestIdKey,
  serverAtFault,
} from "./observe.js";

/** A caller's own request id is kept when it is short and plain; else one is made. */
const REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * One line per RPC at `level` (info or debug): request id, procedure,
 * protocol, code, reason, duration, tenant and key id; a failed call's error
 * with its cause chain when the server is at fault (Internal, Unknown,
 * Unavailable). A caller's `x-request-id` header is used as the request id.
 * Put it outside the error interceptor, so it sees the code the caller gets.
 */
export function requestLogInterceptor(level: "info" | "debug"): Interceptor {
  const logged = requestLines(level);
  // Off at this level (the log level is read per call): the call is passed
  // on as it is, with no request id, timer or wrapper made for it.
  return (next) => {
    const withLine = logged(next);
    return (req) => (logs(level) ? withLine(req) : next(req));
  };
}

function requestLines(level: "info" | "debug"): Interceptor {
  return observing((req) => {
    const given = req.header.get("x-request-id");
    const requestId = given && REQUEST_ID.test(given) ? given : randomUUID();
    req.contextValues.set(requestIdKey, requestId);
    const started = process.hrtime.bigint();
    return (err) => {
      const caller = callerIn(req.contextValues);
      const code = codeOf(err);
      log[level]("rpc", {
        ...callSite(req),
        protocol: protocolOf(req.header.get("content-type")),
        code,
        ...(err === undefined ? {} : { reason: reasonOf(err) }),
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        tenant: caller?.tenantId,
        keyId: caller?.keyId,
        ...(serverAtFault(err) ? { err } : {}),
      });
    };
  });
}

/**
 * One line per request on the paths outside the RPC router that callers
 * use (Server-Sent Events, calendar feeds), at `level` as the RPCs' lines:
 * `"msg":"http"`, request id, method, `path` as given by the caller of this
 * (a feed's is written without its secret), HTTP status and duration, once
 * the answer has ended. So a stream's refusal, or a run of guessed feed
 * URLs, shows in the log as a refused RPC does.
 */
export function httpLines(
  level: "info" | "debug",
): (req: NodeRequest, res: NodeResponse, path: string, handle: () => void) => void {
  return (req, res, path, handle) => {
    if (!logs(level)) return handle();
    const given = req.headers["x-request-id"];
    const requestId = typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    const started = process.hrtime.bigint();
    res.once("close", () =>
      log[level]("http", {
        requestId,
        method: clipText(req.method ?? "", 20),
        path,
        status: res.statusCode,
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
      }),
    );
    handle();
  };
}
