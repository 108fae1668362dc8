import { randomUUID } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";
import { log, logs } from "../log.js";
import { callerIn } from "./auth.js";
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
